"""The UniPixel pipeline: `segment`, `ask` (with the PixelQA two-round flow) and `chat` over one model.

A query runs as the official tools do — the LLM reads N uniformly sampled frames (16 by default; an image is one
frame), answers greedily, and every `<|seg|>` of the answer prompts SAM2 on the first frame, whose memory propagates
the mask forward — with these differences:

* every `<|seg|>` of an answer is one object (the official release keeps one), and all objects of a query are
  tracked by SAM2 as one batch over frames encoded once (a 3-object query on 16 frames encodes 16 frames, not 48);
* regions can be points and boxes as well as masks. Point/box regions first go through PixelQA's localization
  round (`[k] <|ref|>` in the question, teacher-forced `[k] <|seg|>` answer) whose masks become the regions'
  `<|mem|>` memory for the real question (round 2); mask regions enter the memory directly. The regions come back
  as the result's first objects, with their ids;
* masks are propagated over the frames the model read (`propagate="sampled"`) or over every frame of the media
  (`propagate="all"`, as the official evaluation), decoded and encoded as tracking reaches them;
* a chat keeps the frames' vision-tower outputs, their SAM2 features and the LLM's keys/values of the
  conversation, so a later turn prefills only its new tokens.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.errors import MediaError, PixelwiseError, PromptError
from pixelwise.core.prompts import MaskPrompt, VisualPrompt
from pixelwise.core.results import MaskTrack, Result, SegObject
from pixelwise.models.unipixel import prompts as templates
from pixelwise.models.unipixel.modeling_unipixel import (
    GenerationOutput,
    PrefixCache,
    UniPixelForConditionalGeneration,
)
from pixelwise.models.unipixel.processing_unipixel import (
    UniPixelInputs,
    UniPixelProcessor,
    masks_for_memory,
    mem_prefix,
    ref_prompt,
    seg_object_id,
    video_message,
)
from pixelwise.pipeline.base import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_NUM_FRAMES,
    Pipeline,
    Progress,
    Query,
    Regions,
    check_propagate,
    check_region_names,
    normalize_regions,
    prompts_on_result,
    resolve_device,
)
from pixelwise.pipeline.media import MediaLike, frames_note, open_query_media

SAM2_CHUNK = 8  # frames encoded together when propagating over every frame of a clip


class UniPixelPipeline(Pipeline):
    """UniPixel behind the pipeline verbs. Build it with `pixelwise.load(path)`."""

    family = "unipixel"

    def __init__(self, model: UniPixelForConditionalGeneration, processor: UniPixelProcessor,
                 path: str | Path | None = None, reference: bool = False):
        self.model = model.eval()
        self.processor = processor
        self.path = Path(path) if path is not None else None
        self.reference = reference
        """Run SAM2 the straightforward way (as the official pipeline): every `<|seg|>` re-encodes the frames and is
        tracked alone, and every frame's input and features are kept until the query ends. Same masks, more work:
        the baseline of `pixelwise bench --reference`."""

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Any = "auto", dtype: Any = None) -> UniPixelPipeline:
        dev, dt = resolve_device(device, dtype)
        model = UniPixelForConditionalGeneration.from_pretrained(path, dtype=dt).to(dev)
        return cls(model, UniPixelProcessor.from_pretrained(path), path)

    def chat(self, media: MediaLike, *, num_frames: int = DEFAULT_NUM_FRAMES, frame_indices: Sequence[int] | None = None,
             propagate: str = "sampled", progress: Progress | None = None) -> UniPixelChat:
        """A conversation about one image or clip (`send` a turn). `frame_indices` picks the frames the model reads
        instead of `num_frames` uniform ones."""
        return UniPixelChat(self, media, num_frames=num_frames, frame_indices=frame_indices, propagate=propagate,
                            progress=progress)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = DEFAULT_NUM_FRAMES, frame_indices: Sequence[int] | None = None,
            propagate: str = "sampled", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            progress: Progress | None = None) -> Result:
        """Answer a question, optionally about regions (named `[k]` in the question) and with answer options.

        With `options` the question is asked as the official multiple choice ("The best option is (" primes the
        answer; `result.answer` is what follows). The result's first objects are the regions, then one object per
        `<|seg|>` of the answer.
        """
        check_region_names(question, [k for k, _ in normalize_regions(regions)])
        chat = self.chat(media, num_frames=num_frames, frame_indices=frame_indices, propagate=propagate,
                         progress=progress)
        return chat.send(question, regions, options=options, max_new_tokens=max_new_tokens)

    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = DEFAULT_NUM_FRAMES,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        """Segment what `text` describes: a phrase ("the red car") is asked as "Please segment the red car in this
        video.", a sentence or question gets "Please provide the segmentation mask." appended, and text that
        already asks for a mask is sent as it is. Regions given too are segmented from their points/boxes and come
        back first (as in `ask`)."""
        chat = self.chat(media, num_frames=num_frames, frame_indices=frame_indices, propagate=propagate,
                         progress=progress)
        question = templates.segmentation_question(text, chat.media.is_image)
        return chat.send(question, regions, max_new_tokens=max_new_tokens, segmentation=True)

    def segment_many(self, media: MediaLike, texts: Sequence[str], *, num_frames: int = DEFAULT_NUM_FRAMES,
                     frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                     max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> list[Result]:
        """Several independent `segment` queries about one image or clip (offline work: RefCOCO has about three
        expressions per image, MeViS several per video), each answered as if asked alone.

        The media is read, resized and encoded (vision tower, SAM2) once for all of them, and each query's LLM
        prefill starts from the keys/values of the previous query: the system prompt and the visual tokens they
        share are not recomputed, only the tokens from the question on. Same answers and masks as `segment` per
        text, up to float rounding."""
        if isinstance(texts, str):
            raise PromptError("segment_many takes a list of texts; use segment for one")
        chat = self.chat(media, num_frames=num_frames, frame_indices=frame_indices, propagate=propagate,
                         progress=progress)
        results = []
        for text in texts:
            question = templates.segmentation_question(text, chat.media.is_image)
            results.append(chat.send(question, max_new_tokens=max_new_tokens, segmentation=True))
            chat.restart()
        return results

    @torch.no_grad()
    def run_batch(self, queries: Sequence[Query], return_errors: bool = False) -> list[Any]:
        """Several queries on different images/clips, their answers generated together (`model.generate_batch`:
        one left-padded prefill, one decoding loop); media reading, region grounding and SAM2 stay per query.
        Same answers and masks as `run` one by one, up to float rounding."""
        results: list[Any] = [None] * len(queries)
        turns: list[tuple[int, UniPixelChat, _Turn, int]] = []
        for i, q in enumerate(queries):
            try:
                chat = self.chat(q.media, num_frames=q.num_frames, frame_indices=q.frame_indices,
                                 propagate=q.propagate)
                if q.task == "ask":
                    check_region_names(q.text, [k for k, _ in normalize_regions(q.regions)])
                    text = q.text
                else:
                    text = templates.segmentation_question(q.text, chat.media.is_image)
                turns.append((i, chat, chat.begin(text, q.regions, options=q.options, segmentation=q.task != "ask"),
                              q.max_new_tokens))
            except PixelwiseError as e:
                if not return_errors:
                    raise
                results[i] = e
        t0 = time.perf_counter()
        stops = self.model.default_stop_token_ids()
        try:
            gens = self.model.generate_batch([t.inputs for _, _, t, _ in turns], max_new_tokens=[m for *_, m in turns],
                                             stop_token_ids=stops,
                                             require_seg=[t.require_seg for _, _, t, _ in turns]) if turns else []
        except PixelwiseError:
            if not return_errors:
                raise
            gens = []  # one prompt failed the batch: answer them one by one, so the error lands on its own query
            for i, _, turn, limit in turns:
                try:
                    gens.append(self.model.generate(turn.inputs, max_new_tokens=limit, stop_token_ids=stops,
                                                    require_seg=turn.require_seg))
                except PixelwiseError as e:
                    results[i] = e
                    gens.append(None)
            kept = [k for k, g in enumerate(gens) if g is not None]
            turns, gens = [turns[k] for k in kept], [gens[k] for k in kept]
        seconds = time.perf_counter() - t0
        self._encode_together([chat for (_, chat, _, _), gen in zip(turns, gens)
                               if any(k >= 0 for k in gen.seg_token_index)])
        for (i, chat, turn, _), gen in zip(turns, gens):
            turn.timings["generate"] = seconds  # the batch's, shared by its queries
            try:
                results[i] = chat.end(turn, gen)
                results[i].extras["batch_size"] = len(turns)
            except PixelwiseError as e:
                if not return_errors:
                    raise
                results[i] = e
        return results


    def _encode_together(self, chats: Sequence[UniPixelChat]) -> None:
        """SAM2-encode the frames read by the chats that still need them (masks on those frames) in one batch."""
        todo = [c for c in chats if c._sam2_features is None and not c._over_all_frames()]
        if len(todo) < 2 or self.reference:
            return
        frames = [c._base.sam2_frames for c in todo]
        feats = self.model.require_sam2().encode_frames(torch.cat(frames).to(self.model.device, self.model.dtype))
        start = 0
        for c, f in zip(todo, frames):
            c._sam2_features = feats.span(start, start + f.shape[0])
            start += f.shape[0]


@dataclass(eq=False)
class _Turn:
    """A turn between `UniPixelChat.begin` and `end`: what its answer is generated from, and what the result needs."""

    start: float  # perf_counter at the start of the query (its media setup included)
    timings: dict[str, float]
    regions: list[_Region]
    question: str
    answer_prefix: str
    messages: list[dict[str, Any]]
    refer_masks: list[torch.Tensor]
    inputs: Any  # UniPixelInputs
    require_seg: bool = False  # a segmentation request of a `segment_forces_seg` model: its answer gets a <|seg|>


@dataclass(eq=False)
class _Region:
    """A region of a turn: its prompt, and once grounded its masks on the frames read (and, for a point/box, the
    localization `<|seg|>` state that re-tracks it over every frame)."""

    id: int
    prompt: VisualPrompt
    state: torch.Tensor | None = None
    words: torch.Tensor | None = None  # the localization's `seg_words` (models with `seg_ground_words`)
    masks: np.ndarray | None = None
    score: float | None = None
    ref: Any = None  # `region_prompts_to_sam2` models: the SAM2 prompt (frames read) the region is tracked from

    @property
    def is_mask(self) -> bool:
        return isinstance(self.prompt, MaskPrompt)


class UniPixelChat:
    """A conversation about one image or clip.

    The frames are resized and patchified once; the vision tower and the SAM2 image encoder run on the first turn
    that needs them and serve every later turn. Each turn re-renders the whole conversation (as the official demo),
    prefills only the tokens after the part it shares with the previous turn's keys/values, and segments only the
    `<|seg|>` tokens of its own answer. Regions may come with any turn: they are grounded then, their `<|mem|>`
    memory opens that turn's message, and the question names them `[k]` from then on (a list of regions is numbered
    after the regions of earlier turns).
    """

    def __init__(self, pipeline: UniPixelPipeline, media: MediaLike, *, num_frames: int = DEFAULT_NUM_FRAMES,
                 frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                 progress: Progress | None = None):
        t0 = time.perf_counter()
        self.model, self.processor = pipeline.model, pipeline.processor
        self.reference = pipeline.reference
        self.propagate = check_propagate(propagate)
        self.progress = progress
        self.media = open_query_media(media, num_frames, frame_indices)
        t1 = time.perf_counter()
        self._base = self.processor(self.media.sampled.frames, [video_message("", self.media.sampled.num_frames)])
        self.messages: list[dict[str, Any]] = []
        self.region_ids: list[int] = []  # every region of the conversation, in the order of their <|mem|> tokens
        self._refer_masks: list[torch.Tensor] = []  # their <|mem|> masks, one [T/2, O, h, w] per turn with regions
        self._vision: tuple[torch.Tensor, ...] | None = None  # vision tower outputs of the frames read
        self._sam2_features: Any = None  # SAM2 features of the frames read
        self._frame_objects: Any = None  # the first frame's proposals from the last prefill (`llm_object_view`)
        self._prefix: PrefixCache | None = None  # the LLM's keys/values of the conversation so far
        self._pending_timings = {"media": t1 - t0, "preprocess": time.perf_counter() - t1}

    @property
    def turns(self) -> int:
        return len(self.messages) // 2

    def restart(self) -> None:
        """Forget the turns (and their regions) but keep the encoded media and the LLM cache: the next `send` is a
        first turn again whose prefill recomputes only what it does not share with the cached tokens."""
        self.messages, self.region_ids, self._refer_masks = [], [], []

    # ------------------------------------------------------------------ a turn

    @torch.no_grad()
    def send(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, segmentation: bool = False) -> Result:
        """One turn: the answer, this turn's regions as objects, then one object per `<|seg|>` of the answer.
        `segmentation`: the turn asks for a mask (a model with `segment_forces_seg` then always answers with one)."""
        turn = self.begin(text, regions, options=options, segmentation=segmentation)
        t1 = time.perf_counter()
        cached, self._prefix = self._prefix, None  # reusing the cache changes it: gone if this turn fails
        gen = self.model.generate(turn.inputs, max_new_tokens=max_new_tokens,
                                  stop_token_ids=self.model.default_stop_token_ids(), prefix=cached,
                                  require_seg=turn.require_seg)
        turn.timings["generate"] = time.perf_counter() - t1
        return self.end(turn, gen)

    def begin(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
              segmentation: bool = False) -> _Turn:
        """The part of a turn before the answer is generated: the regions grounded, the prompt built (`send` is
        `begin`, `model.generate`, `end`; a batch of chats generates their turns together)."""
        if not text or not text.strip():
            raise PromptError("the question is empty")
        t0 = time.perf_counter()
        timings, self._pending_timings = self._pending_timings, {}
        setup = sum(timings.values())
        turn_regions = self._new_regions(regions)
        check_region_names(text, [r.id for r in turn_regions], self.region_ids, require_all=False)
        question = templates.mcq_question(text, options) if options else text.strip()
        prefix = templates.MCQ_ANSWER_PREFIX if options else ""
        refer_masks = self._refer_masks
        if turn_regions:
            memory, refer = self._ground(turn_regions, text, options, timings)
            question, refer_masks = memory + question, [*refer_masks, refer]
        num = self.media.sampled.num_frames
        user = video_message(question, num) if not self.messages else {"role": "user", "content": question}
        messages = [*self.messages, user]
        inputs = self.processor.with_messages(self._base, messages, assistant_prefix=prefix)
        inputs.refer_mask = torch.cat(refer_masks, dim=1) if refer_masks else None
        self._reuse_encodings(inputs)
        force = segmentation and not options and self.model.config.segment_forces_seg
        return _Turn(t0 - setup, timings, turn_regions, question, prefix, messages, refer_masks, inputs, force)

    @torch.no_grad()
    def end(self, turn: _Turn, gen: GenerationOutput) -> Result:
        """The part of a turn after the answer is generated (`gen`, for `turn.inputs`): masks and the result."""
        timings = turn.timings
        stops = self.model.default_stop_token_ids()
        self._keep_encodings(gen.prefill)
        answer, spans = self.processor.decode_answer(gen.generated_ids.tolist(), stops)
        new = [k for k, i in enumerate(gen.seg_token_index) if i >= 0]  # earlier turns' <|seg|> were segmented

        t2 = time.perf_counter()
        words = gen.seg_words[new] if gen.seg_words is not None else None
        objects, frame_indices = self._objects(turn.regions, gen.seg_states[new], answer, spans, words)
        timings["segment"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - turn.start
        self.messages = [*turn.messages, {"role": "assistant", "content": turn.answer_prefix + answer}]
        self._prefix = gen.cache
        self.region_ids += [r.id for r in turn.regions]
        self._refer_masks = turn.refer_masks
        over_all = self._over_all_frames()
        frames_read = list(self.media.sampled.frame_indices)
        return Result(
            answer=answer,
            objects=objects,
            frame_indices=frame_indices,
            size=self.media.size,
            timings=timings,
            extras={"question": turn.question, "answer_prefix": turn.answer_prefix,
                    "frames_read": list(self.media.sampled.frame_indices), "propagate": self.propagate,
                    "generated_tokens": int(gen.generated_ids.numel())},
            media=self.media.all_frames_view() if over_all else self.media.sampled,
            prompts=prompts_on_result([r.prompt for r in turn.regions], frames_read, frame_indices),
        )

    # ------------------------------------------------------------------ regions (PixelQA round 1 + memory)

    def _new_regions(self, regions: Regions) -> list[_Region]:
        first = max(self.region_ids, default=-1) + 1
        items = normalize_regions(regions, first_id=first)
        ids = [k for k, _ in items]
        taken = set(self.region_ids) & set(ids)
        if len(set(ids)) != len(ids) or taken:
            raise PromptError(f"region ids must be unique in a conversation; repeated: {sorted(taken or ids)}")
        h, w = self.media.size
        for k, p in items:
            try:
                p.validate(h, w, self.media.sampled.num_frames)
            except PromptError as e:
                raise PromptError(f"region [{k}]: {e}{frames_note(self.media)}") from None
        return [_Region(k, p) for k, p in items]

    def _ground(self, regions: list[_Region], question: str, options: Sequence[str] | None,
                timings: dict[str, float]) -> tuple[str, torch.Tensor]:
        """Masks for the regions, and the `<|mem|>` prefix + `refer_mask` that carry them into the question.

        Point/box regions are segmented by PixelQA's localization round on the frames read; mask regions keep
        their own mask.
        """
        t0 = time.perf_counter()
        num, size = self.media.sampled.num_frames, self.media.size
        label = masks_for_memory([[r.prompt] if r.is_mask else [] for r in regions], num, size)
        located = [r for r in regions if not r.is_mask]
        if located:
            body = question.strip() + (templates.options_block(options) if options else "")
            text, order = templates.with_refs(body, [r.id for r in located])
            messages = [video_message(templates.localize_question(text), num),
                        {"role": "assistant", "content": templates.localize_answer([r.id for r in located])}]
            inputs = self.processor.with_messages(self._base, messages)
            by_id = {r.id: r.prompt for r in located}
            inputs.ref_prompts = [ref_prompt(by_id[k], size, self.processor.sam2_image_size, num) for k in order]
            self._reuse_encodings(inputs)
            out = self.model(inputs)
            self._keep_encodings(out)
            states = out.prenorm_hidden[out.seg_positions]  # one per `[k] <|seg|>`, in region order
            words = (self.model.seg_words(inputs.input_ids, out.seg_positions)
                     if self.model.config.seg_ground_words else None)
            if self.model.config.region_prompts_to_sam2:  # tiny models: SAM2 takes the point/box itself
                for r in located:
                    r.ref = inputs.ref_prompts[order.index(r.id)]
                masks, scores = self._track_regions([r.ref for r in located])
            else:
                masks, scores = self._track(states, over_all=False, words=words)
            for j, r in enumerate(located):
                r.state, r.masks, r.score = states[j], masks[j], float(scores[j])
                r.words = words[j] if words is not None else None
        for o, r in enumerate(regions):
            # a prompted region's masks cover the clip (tracked back too); its memory starts at the prompted frame, as
            # the tiny models were trained and scored (session 13: the back-tracked frames in it cost PixelQA 0.575 ->
            # 0.53 over four test seeds)
            start = int(r.ref.frame) if r.ref is not None else 0
            if r.is_mask:
                r.masks = label[:, o].numpy()
            elif r.masks[start:].any():
                label[start:, o] = torch.from_numpy(r.masks[start:])
            else:  # missed by the localization: remembered as the whole frame (official PixelQA)
                label[:, o] = True
        _, refer = self.processor.memory_inputs(label, self._base.video_grid_thw)
        timings["ground"] = time.perf_counter() - t0
        return mem_prefix(refer, num, self.media.is_image, object_ids=[r.id for r in regions]), refer

    # ------------------------------------------------------------------ masks

    def _objects(self, regions: list[_Region], answer_states: torch.Tensor, answer: str,
                 spans: list[tuple[int, int]], answer_words: torch.Tensor | None = None
                 ) -> tuple[list[SegObject], list[int]]:
        """This turn's regions, then one object per `<|seg|>` of the answer, over the propagated frames
        (`answer_words`: the states' `seg_words`, models with `seg_ground_words`)."""
        media = self.media
        over_all = self._over_all_frames()
        # Over every frame, the point/box regions are tracked again: from their own prompt on its frame, forward and
        # back (`region_prompts_to_sam2` models, as over the frames read), else by their localization state in one
        # batch with the answer's objects.
        prompted = [r for r in regions if r.ref is not None] if over_all else []
        retrack = [r for r in regions if r.state is not None and r not in prompted] if over_all else []
        states = torch.cat([torch.stack([r.state for r in retrack]), answer_states]) if retrack else answer_states
        words = answer_words
        if retrack and answer_words is not None:
            words = torch.cat([torch.stack([r.words for r in retrack]), answer_words])
        every = self._every_frame_features() if prompted else None  # encoded once for both passes
        masks, scores = self._track(states, over_all, every, words)
        region_tracks = self._track_regions([r.ref for r in prompted], every) if prompted else ([], [])
        objects: list[SegObject] = []
        for r in regions:
            if r in prompted:
                j = prompted.index(r)
                m, score = region_tracks[0][j], float(region_tracks[1][j])
            elif r in retrack:
                j = retrack.index(r)
                m, score = masks[j], float(scores[j])
            elif over_all:  # a mask region: its own mask, on its frame of the media
                m = MaskTrack(media.num_frames, media.size)
                for t, position in enumerate(media.positions):
                    m[position] = r.masks[t]
                score = r.score
            else:
                m, score = r.masks, r.score
            objects.append(SegObject(id=r.id, masks=m, label=f"[{r.id}]", score=score))
        used = {o.id for o in objects}
        for j, span in enumerate(spans):
            k = seg_object_id(answer, span)
            if k is None or k in used:  # ids stay unique: they name the mask files and pick the colours
                k = next(i for i in itertools.count() if i not in used)
            used.add(k)
            o = len(retrack) + j
            objects.append(SegObject(id=k, masks=masks[o], span=span, score=float(scores[o])))
        numbers = media.frame_numbers()
        return objects, numbers if over_all else [numbers[t] for t in media.positions]

    def _over_all_frames(self) -> bool:
        return self.propagate == "all" and self.media.num_frames > self.media.sampled.num_frames

    def _track(self, states: torch.Tensor, over_all: bool, every: list | None = None,
               words: torch.Tensor | None = None) -> tuple[Sequence[Any], np.ndarray]:
        """Masks per object and object scores [O] (sigmoid of the best frame's object score); `words`: the states'
        `seg_words` (models with `seg_ground_words`).

        Over the frames read, masks are bool ndarrays [O, T, H, W]; over every frame (`propagate="all"`) each
        object's masks are a `MaskTrack` written frame by frame as RLE, so memory does not grow with the clip.
        """
        if self.reference:
            return self._track_reference(states, over_all, words)
        media = self.media
        num = media.num_frames if over_all else media.sampled.num_frames
        h, w = media.size
        masks: Any = ([MaskTrack(num, (h, w)) for _ in range(states.shape[0])] if over_all
                      else np.zeros((states.shape[0], num, h, w), bool))
        if states.shape[0] == 0:
            return masks, np.zeros(0)
        features = (every or self._lazy_features()) if over_all else self._sampled_features()
        best = torch.full((states.shape[0],), -torch.inf)
        for out in self.model.segment_frames(states, features, (h, w), num_frames=num, visual=self._retrieval_visual(),
                                             later=self._later_frames(), objects=self._frame_objects, words=words):
            frame_masks = (out.mask_logits > 0).cpu().numpy()
            for o in range(states.shape[0]):
                masks[o][out.frame_idx] = frame_masks[o]
            best = torch.maximum(best, out.object_score_logits.float().cpu())
            if self.progress is not None:
                self.progress(out.frame_idx + 1, num)
        return masks, torch.sigmoid(best).numpy()

    def _every_frame_features(self) -> list:
        """Every frame's SAM2 features, kept: the backward pass of `_track_regions` visits them in reverse (the
        models that prompt SAM2 with their regions are the tiny ones, whose 128-px SAM2 features take tens of KB a
        frame)."""
        lazy = self._lazy_features()
        return [lazy(t) for t in range(self.media.num_frames)]

    def _retrieval_visual(self) -> torch.Tensor | None:
        """The first frame pair's visual tokens for models whose retrieval keys read them (else None)."""
        vision = self._vision[0] if self._vision is not None else None
        return self.model.retrieval_visual(vision, self._base.video_grid_thw)

    def _later_frames(self) -> list[Any]:
        """The sampled frames' SAM2 features the proposals are tracked to (models with `seg_key_motion`)."""
        return self.model.later_frames(self._sampled_features()) if self.model.config.seg_key_motion else []

    def _track_regions(self, prompts: list, every: list | None = None) -> tuple[Any, np.ndarray]:
        """Masks and object scores [O] of point/box regions prompting SAM2 (`region_frames`): over the frames read
        (masks [O, T, H, W]), or with `every` (`_every_frame_features`) over every frame of the media (a `MaskTrack`
        each, the prompts moved to their frames' positions in the media)."""
        media = self.media
        if every is None:
            features, num = self._sampled_features(), media.sampled.num_frames
            masks: Any = np.zeros((len(prompts), num, *media.size), bool)
        else:
            features, num = every, media.num_frames
            prompts = [replace(p, frame=int(media.positions[int(p.frame)])) for p in prompts]
            masks = [MaskTrack(num, media.size) for _ in prompts]
        best = torch.full((len(prompts),), -torch.inf)
        for k, out in self.model.region_frames(prompts, features, media.size, num):
            masks[k][out.frame_idx] = (out.mask_logits[0] > 0).cpu().numpy()
            best[k] = torch.maximum(best[k], out.object_score_logits[0].float().cpu())
        return masks, torch.sigmoid(best).numpy()

    def _track_reference(self, states: torch.Tensor, over_all: bool, words: torch.Tensor | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The straightforward way (reference mode): per `<|seg|>`, decode and SAM2-encode every frame again and keep
        all of them (inputs and features), then track that one object; masks held as a dense bool array."""
        media = self.media
        num = media.num_frames if over_all else media.sampled.num_frames
        h, w = media.size
        masks = np.zeros((states.shape[0], num, h, w), bool)
        scores = np.zeros(states.shape[0])
        sam2 = self.model.require_sam2()
        for o in range(states.shape[0]):
            frames = np.stack(list(media.iter_frames())) if over_all else self.media.sampled.frames
            x = self.processor.sam2_frames(frames).to(self.model.device, self.model.dtype)
            chunk = SAM2_CHUNK if over_all else num  # the encoder batches of the optimised path (same numbers)
            encoded = [sam2.encode_frames(x[i: i + chunk]) for i in range(0, num, chunk)]
            frame_features = [f[i] for f in encoded for i in range(len(f))]
            best = torch.tensor(-torch.inf)
            for out in self.model.segment_frames(states[o: o + 1], frame_features, (h, w), num_frames=num,
                                                 visual=self._retrieval_visual(), later=self._later_frames(),
                                                 words=words[o: o + 1] if words is not None else None):
                masks[o, out.frame_idx] = (out.mask_logits[0] > 0).cpu().numpy()
                best = torch.maximum(best, out.object_score_logits[0].float().cpu())
                if self.progress is not None:
                    self.progress(out.frame_idx + 1, num)
            scores[o] = float(torch.sigmoid(best))
        return masks, scores

    def _reuse_encodings(self, inputs: UniPixelInputs) -> None:
        """What an earlier query of this conversation computed on its frames, for `inputs` to reuse: the vision
        tower's outputs and (`llm_object_view`) the first frame's proposals; before the first proposals, an image's
        SAM2 features (one frame, needed for its masks anyway), so the frame is SAM2-encoded once."""
        inputs.vision = self._vision
        if not self.model.config.llm_object_view:
            return
        inputs.objects = self._frame_objects
        if self._frame_objects is None and (self._sam2_features is not None or self._base.sam2_frames.shape[0] == 1):
            inputs.sam2_features = self._sampled_features()

    def _keep_encodings(self, out: Any) -> None:
        """What a forward (`UniPixelOutput`) computed on this conversation's frames, for later queries to reuse
        (`_reuse_encodings`): the vision tower's outputs and the first frame's proposals (also the retrieval keys')."""
        self._vision = self._vision or out.vision
        self._frame_objects = out.objects

    def _sampled_features(self) -> Any:
        if self._sam2_features is None:
            sam2 = self.model.require_sam2()
            self._sam2_features = sam2.encode_frames(self._base.sam2_frames.to(self.model.device, self.model.dtype))
        return self._sam2_features

    def _lazy_features(self):
        """Frame t -> SAM2 features, decoding and encoding the media's frames in order, `SAM2_CHUNK` at a time."""
        sam2 = self.model.require_sam2()
        frames = self.media.iter_frames()
        buffer: dict[int, Any] = {}

        def features(t: int):
            if t not in buffer:
                buffer.clear()
                chunk = list(itertools.islice(frames, SAM2_CHUNK))
                if not chunk:
                    raise MediaError(f"{self.media.path or 'media'}: could not decode frame {t} (file truncated?)")
                x = self.processor.sam2_frames(np.stack(chunk)).to(self.model.device, self.model.dtype)
                encoded = sam2.encode_frames(x)
                buffer.update({t + i: encoded[i] for i in range(len(chunk))})
            return buffer[t]

        return features


__all__ = ["UniPixelChat", "UniPixelPipeline"]
