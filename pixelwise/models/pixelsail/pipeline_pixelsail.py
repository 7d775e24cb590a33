"""`PixelSailPipeline`: the pipeline API (`segment`, `ask`, `chat`, `info`, `predict`) over a Pixel-SAIL checkpoint.

Pixel-SAIL is an image model. For a clip, the answer is generated on one frame (the first frame read, or the frame
the region prompts are drawn on) and then read, teacher-forced, on every frame that needs masks (the frames read,
or every frame with `propagate="all"`): each frame's own forward pass gives its `[SEG]` states and masks. No memory
carries objects across frames. Regions are named `[0]`, `[1]`, ... in questions (PixelWorld's `<region>` works
too); each becomes a `<Promptk>` token whose embedding is injected into the patches it covers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core.errors import PromptError
from pixelwise.core.prompts import VisualPrompt
from pixelwise.core.results import Result, SegObject
from pixelwise.models.pixelsail.configuration_pixelsail import prompt_token
from pixelwise.models.pixelsail.modeling_pixelsail import PixelSailModel
from pixelwise.models.pixelsail.processing_pixelsail import REGION_PLACEHOLDER, PixelSailProcessor
from pixelwise.pipeline.base import (
    DEFAULT_NUM_FRAMES,
    Pipeline,
    Regions,
    check_propagate,
    check_region_names,
    normalize_regions,
    resolve_device,
)
from pixelwise.pipeline.media import MediaLike, QueryMedia, open_query_media


def segmentation_question(text: str) -> str:
    """A bare referring expression becomes "Please segment <expr>."; a sentence ending in . ? ! is kept."""
    t = text.strip()
    return t if t.endswith(("?", ".", "!")) else f"Please segment {t}."


def with_options(question: str, options: Sequence[str] | None) -> str:
    if not options:
        return question
    return question + " " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))


def name_regions(question: str, ids: Sequence[int]) -> str:
    """`[k]` (pipeline convention) -> `<Prompt i>` where i is region k's place; `<region>` marks are left to the
    processor (filled in order)."""
    if REGION_PLACEHOLDER in question:
        return question
    for i, k in enumerate(ids):
        question = re.sub(rf"\[{k}\]", prompt_token(i), question)
    return question


def mask_frames(qm: QueryMedia, propagate: str) -> tuple[np.ndarray, list[int], list[int]]:
    """(frames uint8 [T, H, W, 3], their source frame numbers, their positions in the media) that get masks."""
    if propagate == "all" and not qm.is_image and qm.num_frames != len(qm.positions):
        frames = np.stack(list(qm.iter_frames()))
        return frames, qm.frame_numbers(), list(range(qm.num_frames))
    return qm.sampled.frames, list(qm.sampled.frame_indices), list(qm.positions)


class PixelSailPipeline(Pipeline):
    family = "pixelsail"

    def __init__(self, model: PixelSailModel, processor: PixelSailProcessor, path: str | Path | None = None,
                 max_new_tokens: int = 64):
        self.model = model.eval()
        self.processor = processor
        self.path = None if path is None else Path(path)
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Any = "auto", dtype: Any = None) -> PixelSailPipeline:
        dev, dt = resolve_device(device, dtype)
        model = PixelSailModel.from_pretrained(path, device=dev, dtype=dt)
        return cls(model, PixelSailProcessor.from_pretrained(path, model.config), path)

    # ------------------------------------------------------------------ core
    def _run(self, qm: QueryMedia, question: str, regions: list[tuple[int, VisualPrompt]], propagate: str,
             history: Sequence[tuple[str, str]] = (), max_new_tokens: int | None = None) -> Result:
        t0 = time.perf_counter()
        clip = qm.sampled
        for _, r in regions:
            r.validate(clip.height, clip.width, clip.num_frames)
        frames_used = {r.frame for _, r in regions}
        if len(frames_used) > 1:
            raise PromptError(f"Pixel-SAIL reads region prompts on one frame; got prompts on frames "
                              f"{sorted(frames_used)}")
        key = frames_used.pop() if frames_used else 0
        prompts = [_on_frame0(r) for _, r in regions]
        q = name_regions(question, [k for k, _ in regions])
        inp = self.processor.build(clip.frames[key], q, prompts=prompts, history=history)
        pred = self.model.generate(inp, max_new_tokens or self.max_new_tokens)
        answer, spans = self.processor.decode_answer(pred.ids)
        n = pred.seg_states.shape[0]
        frames, numbers, positions = mask_frames(qm, propagate)
        masks = np.zeros((n, len(frames), clip.height, clip.width), bool)
        if n:
            answer_text = self.processor.text.decode([i for i in pred.ids if i != self.model.im_end_id])
            key_pos = qm.positions[key]
            for t, pos in enumerate(positions):
                if pos == key_pos:
                    masks[:, t] = (pred.mask_logits > 0).cpu().numpy()
                    continue
                forced = self.processor.build(frames[t], q, answer_text, history=history)
                logits = self.model.masks_for_answer(forced)
                if logits.shape[0] == n:
                    masks[:, t] = (logits > 0).cpu().numpy()
        objects = [SegObject(k, masks[k], spans[k] if k < len(spans) else None) for k in range(n)]
        media = qm.sampled if len(numbers) == len(qm.positions) else qm.all_frames_view()
        return Result(answer=answer, objects=objects, frame_indices=numbers, size=clip.size,
                      timings={"total_s": time.perf_counter() - t0}, media=media)

    # ------------------------------------------------------------------ API
    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = DEFAULT_NUM_FRAMES,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int | None = None, progress: Any = None) -> Result:
        qm = open_query_media(media, num_frames, frame_indices)
        return self._run(qm, segmentation_question(text), normalize_regions(regions), check_propagate(propagate),
                         max_new_tokens=max_new_tokens)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = DEFAULT_NUM_FRAMES, frame_indices: Sequence[int] | None = None,
            propagate: str = "sampled", max_new_tokens: int | None = None, progress: Any = None) -> Result:
        qm = open_query_media(media, num_frames, frame_indices)
        items = normalize_regions(regions)
        check_region_names(question, [k for k, _ in items])
        return self._run(qm, with_options(question, options), items, check_propagate(propagate),
                         max_new_tokens=max_new_tokens)

    def chat(self, media: MediaLike, *, num_frames: int = DEFAULT_NUM_FRAMES,
             frame_indices: Sequence[int] | None = None, propagate: str = "sampled", progress: Any = None
             ) -> PixelSailChat:
        return PixelSailChat(self, open_query_media(media, num_frames, frame_indices), check_propagate(propagate))


class PixelSailChat:
    """Multi-turn chat on one image or clip: earlier turns are kept as ChatML history."""

    def __init__(self, pipe: PixelSailPipeline, qm: QueryMedia, propagate: str):
        self.pipe, self.qm, self.propagate = pipe, qm, propagate
        self.history: list[tuple[str, str]] = []

    def send(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
             max_new_tokens: int | None = None) -> Result:
        if not text or not text.strip():
            raise PromptError("empty chat message")
        r = self.pipe._run(self.qm, with_options(text, options), normalize_regions(regions), self.propagate,
                           history=self.history, max_new_tokens=max_new_tokens)
        self.history.append((text, r.answer))
        return r


def _on_frame0(p: VisualPrompt) -> VisualPrompt:
    """The processor sees one frame; the prompt moves onto it (frame 0) after validation against the clip."""
    import dataclasses

    return p if p.frame == 0 else dataclasses.replace(p, frame=0)
