"""`Result`: what every model family returns — answer text plus segmented objects.

One type for the CLI, the Python API, the HTTP server and evaluation. Masks are bool `[T, H, W]` at the media's
original resolution, one per frame of the result's frame list; `frame_indices` maps them to source frame numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core import masks as mask_ops
from pixelwise.core.clip import Clip
from pixelwise.core.errors import FormatError, MaskError
from pixelwise.core.export import save_result
from pixelwise.core.io import read_json
from pixelwise.core.media import DEFAULT_LIMITS
from pixelwise.core.prompts import VisualPrompt

# What a family's answer writes where a mask belongs: `<|seg|>` (UniPixel), `[SEG]` / `[SEG3]` (PixelLM, UFO's
# dataset form, Pixel-SAIL), `[SIG]` (VITRON), `<MASK>`.
SEGMENTATION_TOKEN = re.compile(r"<\|\w+\|>|\[[A-Z]+\d*\]|<[A-Z]+>")


class MaskTrack:
    """A bool `[T, H, W]` mask track held as one COCO RLE per frame (None = empty frame).

    What long propagations return (`propagate="all"`): a frame's mask is compressed as it is produced, so holding a
    1,000-frame track costs its RLE, not T*H*W bytes. It stands in for the ndarray of `SegObject.masks`: indexing a
    frame (`track[t]`) and iterating decode one frame at a time; `np.asarray(track)` (and any other attribute or
    index, e.g. `track.sum()`, `track[1:3]`) decodes the whole track on demand.
    """

    def __init__(self, num_frames: int, size: tuple[int, int]):
        self.shape = (int(num_frames), int(size[0]), int(size[1]))
        self._rles: list[mask_ops.RLE | None] = [None] * self.shape[0]

    ndim = 3
    dtype = np.dtype(bool)

    @classmethod
    def from_rles(cls, rles: list[Any], size: tuple[int, int], source: str = "masks") -> MaskTrack:
        """A track over RLEs read from a file, each validated (structure, size, run total) but not decoded: a
        small JSON claiming many large frames costs its text, not T*H*W bytes."""
        track = cls(len(rles), size)
        for t, rle in enumerate(rles):
            if rle is not None:
                mask_ops.validate_rle(rle, track.shape[1:], f"{source}[{t}]")
                track._rles[t] = rle
        return track

    def __setitem__(self, t: int, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape[1:]:
            raise ValueError(f"frame mask {mask.shape} does not match the track's {self.shape[1:]}")
        self._rles[t] = mask_ops.rle_encode(mask) if mask.any() else None

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        rle = self._rles[t]
        return np.zeros(self.shape[1:], bool) if rle is None else mask_ops.rle_decode(rle)

    def rles(self) -> list[mask_ops.RLE | None]:
        """The per-frame RLEs (None where empty), as `Result.to_json` writes them."""
        return list(self._rles)

    def __iter__(self):
        return (self.frame(t) for t in range(self.shape[0]))

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.frame(int(key) % self.shape[0] if key < 0 else int(key))
        return np.asarray(self)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        for t, rle in enumerate(self._rles):
            if rle is not None:
                out[t] = mask_ops.rle_decode(rle)
        return out if dtype is None else out.astype(dtype)

    def __getattr__(self, name: str) -> Any:  # ndarray methods (any, sum, astype, ...) on the decoded view
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def nbytes_held(self) -> int:
        """Bytes of RLE text held (what the track costs instead of T*H*W)."""
        return sum(len(r["counts"]) for r in self._rles if r is not None)


@dataclass
class SegObject:
    """One object of an answer.

    `span` is the (start, end) character range of `Result.answer` the object belongs to (e.g. the `[0]` or the
    phrase before a segmentation token), or None when the answer text does not mention it.
    """

    id: int
    masks: np.ndarray  # bool [T, H, W] (or a MaskTrack: per-frame RLE, decoded on demand)
    span: tuple[int, int] | None = None
    label: str | None = None
    score: float | None = None
    box: tuple[float, float, float, float] | None = None  # optional box answer (x1, y1, x2, y2), e.g. from UFO

    def __post_init__(self) -> None:
        if isinstance(self.masks, MaskTrack):
            return
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim == 2:
            self.masks = self.masks[None]
        if self.masks.ndim != 3:
            raise FormatError(f"object {self.id}: masks must be [T, H, W], got {self.masks.shape}")

    def boxes(self) -> list[tuple[int, int, int, int] | None]:
        """Tight (x1, y1, x2, y2) box of the mask on each frame (None where empty)."""
        return [mask_ops.mask_to_box(m) for m in self.masks]


@dataclass
class Result:
    answer: str
    objects: list[SegObject] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=lambda: [0])
    size: tuple[int, int] = (0, 0)  # (H, W)
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # family-specific outputs (edited frames, boxes, ...)
    # The frames the masks belong to, for drawing: a Clip in memory, or the media path (its frames are read again
    # on `save`). Not part of the JSON.
    media: Clip | str | Path | None = field(default=None, repr=False, compare=False)
    # The visual prompts of the request, their `frame` indexing this result's frames: drawn on overlays.
    prompts: list[VisualPrompt] = field(default_factory=list, repr=False, compare=False)

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    @property
    def text(self) -> str:
        """The answer as people read it: `[k]` where the model wrote a segmentation token for object k
        (`answer` keeps the model's raw text)."""
        return self.display()[0]

    def display(self) -> tuple[str, dict[int, tuple[int, int]]]:
        """(`text`, span of each object in it, by position in `objects`).

        An object whose span is a segmentation token becomes `[k]` there; when the answer already reads `[k] <|seg|>`
        (the official multi-object form) the token goes and the span is that `[k]`. Other spans (a phrase, a box
        as text) are kept and moved with the text."""
        spans = sorted((o.span[0], o.span[1], j) for j, o in enumerate(self.objects)
                       if o.span is not None and 0 <= o.span[0] <= o.span[1] <= len(self.answer))
        out, moved, pos = "", {}, 0
        for start, end, j in spans:
            if start < pos:
                continue  # overlapping spans: keep the first
            out += self.answer[pos:start]
            piece, oid = self.answer[start:end], self.objects[j].id
            if SEGMENTATION_TOKEN.fullmatch(piece):
                named = re.search(rf"\[{oid}\]\s*$", out)
                if named:
                    out = out[: named.start()]
                piece = f"[{oid}]"
            moved[j] = (len(out), len(out) + len(piece))
            out += piece
            pos = end
        return out + self.answer[pos:], moved

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; masks as COCO RLE per object and frame (None for an empty frame)."""
        return {
            "answer": self.answer,
            "text": self.text,
            "size": list(self.size),
            "frame_indices": list(self.frame_indices),
            "objects": [
                {
                    "id": o.id,
                    "label": o.label,
                    "span": list(o.span) if o.span is not None else None,
                    "score": o.score,
                    "box": list(o.box) if o.box is not None else None,
                    "masks": (o.masks.rles() if isinstance(o.masks, MaskTrack)
                              else [mask_ops.rle_encode(m) if m.any() else None for m in o.masks]),
                }
                for o in self.objects
            ],
            "timings": dict(self.timings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "result") -> Result:
        """A result from its JSON (as `to_json` writes it), validated field by field; masks stay RLE (`MaskTrack`,
        decoded a frame at a time when used), so a small file claiming many large frames allocates nothing."""

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return is_int(v) or isinstance(v, (float, np.floating))

        try:
            size, frame_indices = data["size"], data["frame_indices"]
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) and v >= 0 for v in size)):
                raise FormatError(f"{source}: 'size' must be [height, width] of non-negative integers, got {size!r}")
            h, w = int(size[0]), int(size[1])
            if h * w > DEFAULT_LIMITS.max_pixels:
                raise FormatError(f"{source}: size {w}x{h} exceeds the limit of {DEFAULT_LIMITS.max_pixels} pixels")
            if (not isinstance(frame_indices, list) or not frame_indices
                    or not all(is_int(i) and i >= 0 for i in frame_indices)):
                raise FormatError(f"{source}: 'frame_indices' must be a non-empty list of non-negative integers")
            if len(frame_indices) > DEFAULT_LIMITS.max_frames:
                raise FormatError(f"{source}: {len(frame_indices)} frames exceed the limit of {DEFAULT_LIMITS.max_frames}")
            frame_indices = [int(i) for i in frame_indices]
            if not isinstance(data["objects"], list):
                raise FormatError(f"{source}: 'objects' must be a list")
            objects = []
            for k, o in enumerate(data["objects"]):
                if not isinstance(o, dict) or not is_int(o.get("id")) or not isinstance(o.get("masks"), list):
                    raise FormatError(f"{source}: objects[{k}] needs an integer 'id' and a list 'masks'")
                span, box, label, score = o.get("span"), o.get("box"), o.get("label"), o.get("score")
                if span is not None and not (isinstance(span, list) and len(span) == 2 and all(map(is_int, span))):
                    raise FormatError(f"{source}: objects[{k}].span must be [start, end] or null")
                if box is not None and not (isinstance(box, list) and len(box) == 4 and all(map(is_num, box))):
                    raise FormatError(f"{source}: objects[{k}].box must be [x1, y1, x2, y2] or null")
                if label is not None and not isinstance(label, str):
                    raise FormatError(f"{source}: objects[{k}].label must be a string or null")
                if score is not None and not is_num(score):
                    raise FormatError(f"{source}: objects[{k}].score must be a number or null")
                rles = o["masks"]
                if len(rles) != len(frame_indices):
                    raise FormatError(
                        f"{source}: objects[{k}] has {len(rles)} masks for {len(frame_indices)} frames"
                    )
                m = MaskTrack.from_rles(rles, (h, w), source=f"{source}: objects[{k}].masks")
                span = tuple(o["span"]) if o.get("span") is not None else None
                box = tuple(o["box"]) if o.get("box") is not None else None
                objects.append(SegObject(int(o["id"]), m, span, o.get("label"), o.get("score"), box))
            answer, timings = data.get("answer", ""), data.get("timings", {})
            if not isinstance(answer, str) or not isinstance(timings, dict):
                raise FormatError(f"{source}: 'answer' must be a string and 'timings' an object")
            return cls(answer, objects, frame_indices, (h, w), dict(timings))
        except FormatError:
            raise
        except MaskError as e:
            raise FormatError(str(e)) from None
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{source}: not a pixelwise result JSON ({type(e).__name__}: {e})") from None

    @classmethod
    def load(cls, path: str | Path) -> Result:
        path = Path(path)
        data = read_json(path)
        if not isinstance(data, dict):
            raise FormatError(f"{path}: result JSON must be an object")
        return cls.from_json(data, source=str(path))

    def save(self, out_dir: str | Path, clip: Clip | None = None) -> dict[str, Path]:
        """Write `result.json`, mask PNGs and an overlay into `out_dir` (`core.export.save_result`)."""
        return save_result(self, out_dir, clip)

