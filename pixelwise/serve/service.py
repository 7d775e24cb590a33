"""The work behind `/v1/segment` and `/v1/ask`, shared by the HTTP API and the web demo.

Requests are described by small Pydantic models (so the OpenAPI schema documents them and malformed fields get a
message naming the field); prompts arrive as JSON (`{"type": "point", "point": [x, y], "frame": 0}`, boxes as
`[x1, y1, x2, y2]`, masks as COCO RLE) and become the core prompt types. `run_task` runs in the model worker thread:
it checks the media against the limits from its header (before any pixel is decoded), validates every prompt
against the frames the model will see, then calls the pipeline with the same arguments the CLI uses, so the masks
equal the CLI's for the same input.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pixelwise.core import masks as mask_ops
from pixelwise.core.errors import MediaTooLargeError, PixelwiseError, PromptError
from pixelwise.core.media import ImageSource, MediaSource, open_media, uniform_indices
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.core.results import Result
from pixelwise.serve.limits import BadRequestError, ServeLimits

# ------------------------------------------------------------------------------------------------ request models


class PointSpec(BaseModel):
    """A click: pixel coordinates in the original media, on position `frame` of the sampled frames."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["point"]
    point: list[float] = Field(min_length=2, max_length=2, description="[x, y] in pixels of the original media")
    frame: int = Field(0, ge=0, description="index into the sampled frames (0 for an image)")
    positive: bool = True


class BoxSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["box"]
    box: list[float] = Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels, x1 < x2, y1 < y2")
    frame: int = Field(0, ge=0, description="index into the sampled frames (0 for an image)")


class MaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["mask"]
    rle: dict[str, Any] = Field(description="COCO RLE {'size': [H, W], 'counts': str | [int]} at the media's size")
    frame: int = Field(0, ge=0, description="index into the sampled frames (0 for an image)")


PromptSpec = Annotated[PointSpec | BoxSpec | MaskSpec, Field(discriminator="type")]


class AskRequest(BaseModel):
    """Fields of `/v1/ask` (JSON body, or multipart form fields with `prompts` as a JSON string and a `file`)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="the question; name the prompts [0], [1], ... in their order")
    path: str | None = Field(None, description="server-side media path under the media root (instead of a file)")
    prompts: list[PromptSpec] = Field(default_factory=list, description="regions the question refers to")
    num_frames: int | None = Field(None, ge=1, description="frames sampled uniformly from a video (first and last "
                                   "included); default 16, or the server's limit if lower")
    propagate: Literal["sampled", "all"] = Field("sampled", description="masks on the sampled frames or all frames")
    max_new_tokens: int | None = Field(None, ge=1, description="longest answer in tokens (default: the model's, "
                                       "at most the server's limit)")


class SegmentRequest(AskRequest):
    """Fields of `/v1/segment`: a referring expression, optionally with visual prompts."""

    text: str = Field(min_length=1, description="what to segment, e.g. 'the red circle that moves to the left'")


def parse_request(model: type[AskRequest], data: dict[str, Any]) -> AskRequest:
    """Validate request fields; a failure becomes a `BadRequestError` listing each bad field and why."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:5]:
            problems.append(f"{_field_name(err['loc'])}: {err['msg']}")
        raise BadRequestError("; ".join(problems)) from None


def _field_name(loc: tuple) -> str:
    """('prompts', 0, 'box', 'box', 2) -> 'prompts[0].box[2]': drop the union tag pydantic puts after an index."""
    out = ""
    parts = list(loc)
    for k, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif k > 0 and isinstance(parts[k - 1], int) and part in ("point", "box", "mask") and k + 1 < len(parts):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


# ------------------------------------------------------------------------------------------------ the pipeline


class Pipeline(Protocol):
    """What the server needs of `pixelwise.load(...)`: see docs/ARCHITECTURE.md, 'The pipeline API'."""

    def segment(self, media: Any, text: str, *, num_frames: int = 16, propagate: str = "sampled") -> Result: ...

    def ask(self, media: Any, question: str, regions: list | None = None, *, num_frames: int = 16) -> Result: ...

    def info(self) -> dict[str, Any]: ...


@dataclass
class MediaFacts:
    """What the header of the media says: enough to validate prompts without decoding pixels."""

    height: int
    width: int
    source_frames: int
    sampled_frames: int
    is_image: bool


def inspect_media(path: Path, num_frames: int, propagate: str, limits: ServeLimits) -> MediaFacts:
    """Open the media with the server's limits (413 over a bound) and say how many frames the model will see."""
    src: MediaSource = open_media(path, limits.media_limits())
    height, width = (int(v) for v in src.size)
    is_image = isinstance(src, ImageSource)
    if is_image:
        sampled = 1
    elif propagate == "all":
        sampled = src.num_frames
    else:
        sampled = len(uniform_indices(src.num_frames, num_frames))
    decoded = sampled * height * width * 3
    if decoded > limits.max_decoded_bytes:
        raise MediaTooLargeError(
            f"decoding {sampled} frame(s) of {width}x{height} needs {decoded / 2**20:.0f} MiB, over the server's "
            f"limit of {limits.max_decoded_bytes / 2**20:.0f} MiB (use fewer frames or propagate='sampled')"
        )
    return MediaFacts(height, width, src.num_frames, sampled, is_image)


def build_prompts(specs: list[PointSpec | BoxSpec | MaskSpec], facts: MediaFacts, num_prompt_frames: int
                  ) -> list[Point | Box | MaskPrompt]:
    """Core prompt objects, each validated against the frame size and the number of frames it may be drawn on."""
    prompts: list[Point | Box | MaskPrompt] = []
    for k, spec in enumerate(specs):
        try:
            if isinstance(spec, PointSpec):
                p: Point | Box | MaskPrompt = Point(spec.point[0], spec.point[1], spec.frame, spec.positive)
            elif isinstance(spec, BoxSpec):
                p = Box(*spec.box, frame=spec.frame)
            else:
                mask = mask_ops.rle_decode(spec.rle, expected_size=(facts.height, facts.width), source=f"prompts[{k}].rle")
                p = MaskPrompt(mask, spec.frame)
            p.validate(facts.height, facts.width, num_prompt_frames)
        except PixelwiseError as e:
            note = "" if facts.is_image else (
                f"; the model reads {num_prompt_frames} of the video's {facts.source_frames} frames and a prompt's "
                "frame counts those (raise num_frames to read more)")
            raise PromptError(f"prompts[{k}]: {e}{note}") from None
        prompts.append(p)
    return prompts


DEFAULT_NUM_FRAMES = 16


def check_request(req: AskRequest, limits: ServeLimits) -> AskRequest:
    """Bounds that need no media (text length, prompt count, frames to sample); fills in the default num_frames."""
    if len(req.text) > limits.max_text_chars:
        raise BadRequestError(f"text: {len(req.text)} characters, over the limit of {limits.max_text_chars}")
    if not req.text.strip():
        raise BadRequestError("text: must not be blank")
    if len(req.prompts) > limits.max_prompts:
        raise BadRequestError(f"prompts: {len(req.prompts)} given, over the limit of {limits.max_prompts}")
    if req.max_new_tokens is not None and req.max_new_tokens > limits.max_new_tokens:
        raise BadRequestError(
            f"max_new_tokens: {req.max_new_tokens} is over the server's limit of {limits.max_new_tokens}")
    if req.num_frames is None:
        return req.model_copy(update={"num_frames": min(DEFAULT_NUM_FRAMES, limits.max_num_frames)})
    if req.num_frames > limits.max_num_frames:
        raise BadRequestError(f"num_frames: {req.num_frames} is over the server's limit of {limits.max_num_frames}")
    return req


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # explicit only: a **kwargs catch-all says nothing about what the family understands


def run_task(pipe: Pipeline, task: str, media: Path, req: AskRequest, limits: ServeLimits) -> tuple[Result, dict[str, float]]:
    """Check the media and prompts, then run the model. Runs in the worker thread; returns (result, timings)."""
    t0 = time.perf_counter()
    facts = inspect_media(media, req.num_frames, req.propagate, limits)
    # prompts index the sampled frames (what the model sees and what the response's masks index)
    prompt_frames = 1 if facts.is_image else len(uniform_indices(facts.source_frames, req.num_frames))
    regions = build_prompts(req.prompts, facts, prompt_frames)
    t1 = time.perf_counter()
    if task == "segment" and (not regions or _accepts(pipe.segment, "regions")):
        method, args = pipe.segment, {"regions": regions} if regions else {}
    else:  # a question, or prompts for a family whose segment() takes none: a prompted question answers with masks
        method, args = pipe.ask, {"regions": regions}
    options = {"num_frames": req.num_frames, "propagate": req.propagate, "max_new_tokens": req.max_new_tokens}
    for name, value in options.items():
        if value is None:  # not given: the model's own default
            continue
        if _accepts(method, name):
            args[name] = value
        elif not (name == "propagate" and value == "sampled"):
            raise BadRequestError(f"{name}: the loaded model's {task} does not take this option")
    result = method(str(media), req.text, **args)
    t2 = time.perf_counter()
    return result, {"inspect_s": t1 - t0, "model_s": t2 - t1}
