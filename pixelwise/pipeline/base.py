"""`Pipeline`: what `pixelwise.load` returns for every model family (docs/ARCHITECTURE.md, "The pipeline API").

A pipeline turns media + text + visual prompts into a `Result`. It owns media decoding, frame sampling, prompt
placement and result assembly; the numerics belong to the family's model and processor. The verbs:
* `segment(media, text)`: masks of what the text describes (one object per segmentation token of the answer);
* `ask(media, question, regions=[Point | Box | MaskPrompt, ...])`: an answer about regions, which the question
  names `[0]`, `[1]`, ... (or the ids of an `{id: prompt}` mapping); the regions come back as objects too;
* `chat(media)` -> a session whose `send(text, regions=None)` turns reuse the encoded media;
* `info()`: family, name, path, parameter count, device, dtype;
* `predict(sample)`: one evaluation sample -> `Result` (the `pixelwise.eval` `Predictor` protocol).

`media` is a path (image, video file, folder of frames), a `Clip`, a uint8 array, a PIL image, a torch tensor or a
list of frames (`pipeline.media.in_memory_frames`); a URL is refused (download it first). `pipe(media, text)` is
`segment`, or `ask` when regions are given. The model reads `num_frames` frames of a video, uniformly spread; prompt
frames index those frames, and so do the result's masks (over every frame of the media with `propagate="all"`);
`Result.frame_indices` gives their source frame numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelwise.core.errors import ConfigError, MediaError, PixelwiseError, PromptError
from pixelwise.core.media import uniform_indices_with
from pixelwise.core.prompts import Box, MaskPrompt, Point, VisualPrompt
from pixelwise.core.results import Result
from pixelwise.pipeline.media import PROPAGATE_MODES, MediaLike, QueryMedia, open_query_media

Regions = Sequence[VisualPrompt] | Mapping[int, VisualPrompt] | None
Progress = Callable[[int, int], None]  # (frames done, frames in total) while masks are propagated

DEFAULT_NUM_FRAMES = 16  # frames the model reads from a video, as the official UniPixel tools
DEFAULT_MAX_NEW_TOKENS = 512


def normalize_regions(regions: Regions, first_id: int = 0) -> list[tuple[int, VisualPrompt]]:
    """Regions as (object id, prompt): a sequence numbers them from `first_id`, a mapping gives its own ids."""
    if regions is None:
        return []
    items = list(regions.items()) if isinstance(regions, Mapping) else list(enumerate(regions, start=first_id))
    for k, p in items:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise PromptError(f"region id {k!r} must be a non-negative integer")
        if not isinstance(p, (Point, Box, MaskPrompt)):
            raise PromptError(f"region [{k}] must be a Point, Box or MaskPrompt, got {type(p).__name__}")
    return items


_REGION_NAME = re.compile(r"\[(\d+)\]")


def check_region_names(question: str, given: Sequence[int], earlier: Sequence[int] = (),
                       require_all: bool = True) -> None:
    """Every `[k]` of a question must name a region given now or earlier in the conversation; with `require_all`,
    every region given now must be named. A `PromptError` says which is wrong."""
    named = {int(k) for k in _REGION_NAME.findall(question)}
    known = set(given) | set(earlier)
    unknown = sorted(named - known)
    if unknown:
        have = ", ".join(f"[{k}]" for k in sorted(known)) or "none"
        raise PromptError(f"the question names {', '.join(f'[{k}]' for k in unknown)}, but no such region was given "
                          f"(regions: {have}); give a point, box or mask for each [k]")
    unnamed = [k for k in given if k not in named] if require_all else []
    if unnamed:
        raise PromptError(f"region {', '.join(f'[{k}]' for k in unnamed)} is not named in the question "
                          f"{question.strip()!r}; write [k] where each region belongs, e.g. 'What is [{unnamed[0]}] "
                          "doing?'")


def prompts_on_result(prompts: Sequence[VisualPrompt], frames_read: Sequence[int],
                      result_frames: Sequence[int]) -> list[VisualPrompt]:
    """The request's prompts (frames index the frames read) with frames indexing the result's frames instead, for
    drawing; prompts on a frame the result does not hold are left out."""
    from dataclasses import replace

    place = {f: i for i, f in enumerate(result_frames)}
    return [replace(p, frame=place[frames_read[p.frame]]) for p in prompts
            if 0 <= p.frame < len(frames_read) and frames_read[p.frame] in place]


def check_propagate(propagate: str) -> str:
    if propagate not in PROPAGATE_MODES:
        raise ConfigError(f"propagate must be one of {', '.join(PROPAGATE_MODES)}, got {propagate!r}")
    return propagate


def resolve_device(device: Any = "auto", dtype: Any = None):
    """(torch.device, torch.dtype): "auto" = CUDA when available, else CPU; bfloat16 on GPU, float32 on CPU."""
    import torch

    auto = device is None or device == "auto"
    try:
        dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if auto else device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {device!r}: {e}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: pixelwise runs on cpu or cuda (cuda:N); {dev.type} is not supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine")
    if dtype is None:
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if isinstance(dtype, torch.dtype):
        return dev, dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if str(dtype).lower() not in names:
        raise ConfigError(f"dtype {dtype!r}: use one of {', '.join(names)}")
    return dev, names[str(dtype).lower()]


_VIDEOREFER_REGION = re.compile(r"<object(\d+)><region>|<region>")


def videorefer_question(text: str, num_regions: int) -> tuple[str, list[int]]:
    """VideoRefer / PixelQA question text -> (text naming regions `[k]`, the id of each region in order).

    `<objectK><region>` becomes `[K]`, a bare `<region>` `[i]` (its position). When the text does not name every
    region exactly once, the regions are `[0]`, `[1]`, ... in order.
    """
    ids: list[int] = []

    def name(m: re.Match) -> str:
        ids.append(int(m.group(1)) if m.group(1) is not None else len(ids))
        return f"[{ids[-1]}]"

    out = _VIDEOREFER_REGION.sub(name, text)
    if len(ids) != num_regions or len(set(ids)) != len(ids):
        ids = list(range(num_regions))
    return out, ids


@dataclass(frozen=True)
class Query:
    """One query of a batch (`Pipeline.run_batch`): what `segment` takes, or with `task="ask"` what `ask` takes."""

    media: MediaLike
    text: str
    regions: Regions = None
    task: str = "segment"  # "segment" | "ask"
    options: Sequence[str] | None = None  # multiple choice (ask)
    num_frames: int = DEFAULT_NUM_FRAMES
    frame_indices: Sequence[int] | None = None
    propagate: str = "sampled"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    def __post_init__(self) -> None:
        if self.task not in ("segment", "ask"):
            raise PromptError(f"a query's task must be 'segment' or 'ask', got {self.task!r}")
        if self.options and self.task != "ask":
            raise PromptError("answer options need task='ask'")

    def settings(self) -> dict[str, Any]:
        return {"num_frames": self.num_frames, "frame_indices": self.frame_indices, "propagate": self.propagate,
                "max_new_tokens": self.max_new_tokens}


class Pipeline:
    """Base class of the family pipelines (see the module docstring for the verbs)."""

    family: str = ""
    path: Path | None = None
    model: Any = None  # the family's nn.Module
    # What the family reads, for the demo and the server to offer only what works (also in `info()`).
    visual_prompts: tuple[str, ...] = ("point", "box", "mask")
    negative_points: bool = False
    reads_video: bool = True

    def __call__(self, media: MediaLike, text: str, regions: Regions = None, **options: Any) -> Result:
        """`pipe(media, text)` as transformers pipelines are called: `ask` when regions are given (the text names
        them `[k]`), else `segment`."""
        if regions:
            return self.ask(media, text, regions, **options)
        return self.segment(media, text, **options)

    # The query options every family takes, by these names (keyword-only), and honours or refuses with an error:
    # num_frames (frames read from a video), frame_indices (exactly these frames instead), propagate ("sampled" |
    # "all": masks on the frames read or on every frame), max_new_tokens (answer length), progress (a callback
    # (done, total) while masks are propagated). `tests/pipeline/test_family_contract.py` checks every family.
    QUERY_OPTIONS = ("num_frames", "frame_indices", "propagate", "max_new_tokens", "progress")

    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = DEFAULT_NUM_FRAMES,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        raise NotImplementedError

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = DEFAULT_NUM_FRAMES, frame_indices: Sequence[int] | None = None,
            propagate: str = "sampled", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            progress: Progress | None = None) -> Result:
        raise NotImplementedError

    def chat(self, media: MediaLike, *, num_frames: int = DEFAULT_NUM_FRAMES,
             frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
             progress: Progress | None = None) -> Any:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What is loaded: family, name, path, parameter count, and the device and dtype of the weights."""
        model = self.model
        first = next(model.parameters())
        name = self.path.name if self.path is not None else getattr(getattr(model, "config", None), "name", None)
        return {
            "family": self.family,
            "name": name,
            "path": None if self.path is None else str(self.path),
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(first.device),
            "dtype": str(first.dtype).removeprefix("torch."),
            "visual_prompts": list(self.visual_prompts),
            "negative_points": self.negative_points,
            "video": self.reads_video,
        }

    def run(self, query: Query) -> Result:
        """One `Query`: `segment` or `ask`."""
        if query.task == "ask":
            return self.ask(query.media, query.text, query.regions, options=query.options, **query.settings())
        return self.segment(query.media, query.text, query.regions, **query.settings())

    def run_batch(self, queries: Sequence[Query], return_errors: bool = False) -> list[Any]:
        """Several queries on different media -> one `Result` each, as `run` gives them one by one. Families that
        can batch their model (UniPixel: one padded prefill and one decoding loop for all) override this; here the
        queries run one after another. With `return_errors`, a query's `PixelwiseError` takes its place in the list
        instead of being raised (a manifest goes on past a bad query)."""
        results: list[Any] = []
        for q in queries:
            try:
                results.append(self.run(q))
            except PixelwiseError as e:
                if not return_errors:
                    raise
                results.append(e)
        return results

    def predict(self, sample: Any) -> Result:
        """One evaluation sample (`sample_query`)."""
        return self.run(sample_query(sample))

    def predict_batch(self, samples: Sequence[Any]) -> list[Result]:
        """Several evaluation samples through `run_batch`."""
        return self.run_batch([sample_query(s) for s in samples])


def sample_query(sample: Any) -> Query:
    """The query of one evaluation sample: region questions are asked (options as multiple choice), the rest
    segmented. The model reads `DEFAULT_NUM_FRAMES` frames, the prompted ones among them, and the masks are
    propagated over every frame of the sample as the official evaluations do: `result.frame_indices` are the
    sample's frames."""
    clip = sample.clip()
    if not (sample.prompts or sample.options):
        return Query(clip, sample.text, propagate="all")
    read = uniform_indices_with(clip.num_frames, DEFAULT_NUM_FRAMES, [p.frame for p in sample.prompts])
    question, ids = videorefer_question(sample.text, len(sample.prompts))
    unnamed = [k for k in ids if f"[{k}]" not in question]
    if unnamed:  # a question that does not name its regions: they are named after it
        question = f"{question.rstrip()} {' '.join(f'[{k}]' for k in unnamed)}"
    regions = {k: _replace_frame(p, read.index(p.frame)) for k, p in zip(ids, sample.prompts)}
    return Query(clip, question, regions, task="ask", options=list(sample.options) or None, frame_indices=read,
                 propagate="all")


def _replace_frame(prompt: VisualPrompt, frame: int) -> VisualPrompt:
    from dataclasses import replace

    return replace(prompt, frame=frame)


class ImageQueryPipeline(Pipeline):
    """Base of families that read one image per query and answer through `processor.encode` ->
    `model.generate` -> `processor.build_result` (PixelLM, UFO)."""

    model_label: str = ""  # how error messages name the model
    visual_prompts: tuple[str, ...] = ()
    reads_video = False

    def _frame(self, media: MediaLike, frame_indices: Sequence[int] | None = None) -> QueryMedia:
        """The one frame the model reads: the image, or the frame of a video `frame_indices=[i]` picks."""
        if frame_indices is not None and len(frame_indices) != 1:
            raise ConfigError(f"{self.model_label} reads one frame; frame_indices must name one, got "
                              f"{list(frame_indices)}")
        qm = open_query_media(media, 1, frame_indices)
        if frame_indices is None and not qm.is_image and qm.num_frames > 1:
            raise MediaError(f"{qm.path or 'media'}: {self.model_label} reads images; give an image, a single "
                             f"frame, or frame_indices=[i] (this media has {qm.num_frames} frames)")
        return qm

    def _image_query(self, num_frames: int, propagate: str) -> None:
        """The shared query options an image model honours: one frame read, masks on that frame."""
        check_propagate(propagate)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")

    def _answer(self, media: MediaLike, question: str, max_new_tokens: int,
                frame_indices: Sequence[int] | None = None) -> Result:
        import time

        t0 = time.perf_counter()
        qm = self._frame(media, frame_indices)
        enc = self.processor.encode(qm.sampled.frames[0], question)
        pred = self.model.generate(enc, self.processor, max_new_tokens=max_new_tokens)
        result = self.processor.build_result(pred.generated_ids, pred.mask_logits, qm.size, pred.scores)
        result.frame_indices = list(qm.sampled.frame_indices)
        result.timings["total_s"] = time.perf_counter() - t0
        return result
