"""`Sample`: one evaluation unit of a public benchmark, whatever its file layout.

A sample is what one model call answers: an expression on a video (MeViS, ReVOS, ...), a sentence on an image
(RefCOCO), a question with options and region prompts (VideoRefer-Bench-Q). Ground-truth masks are kept *lazy*
(`MaskTrack`s that decode on demand) so a reader can index a whole benchmark without decoding thousands of frames,
and so samples stay small and picklable for multiprocess scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pixelwise.core import masks as mask_ops
from pixelwise.core.clip import Clip
from pixelwise.core.errors import FormatError, MaskError
from pixelwise.core.io import parse_json, read_json
from pixelwise.core.media import load_image, open_image_checked
from pixelwise.core.prompts import VisualPrompt


class MaskTrack(Protocol):
    """Ground truth of one target over the sample's frames: `load()` → bool [T, H, W]."""

    def load(self) -> np.ndarray: ...


@dataclass
class RleTrack:
    """COCO RLEs per frame (None = target absent), as in `mask_dict.json`. Validated against `size` on decode."""

    rles: list[Any]
    size: tuple[int, int]
    source: str = "RLE"

    def load(self) -> np.ndarray:
        out = np.zeros((len(self.rles), *self.size), dtype=bool)
        for t, rle in enumerate(self.rles):
            if rle:
                try:
                    out[t] = mask_ops.rle_decode(rle, expected_size=self.size, source=f"{self.source}[{t}]")
                except MaskError as e:
                    raise FormatError(str(e)) from None
        return out


@dataclass
class PngTrack:
    """Per-frame annotation PNGs (None = no file: target absent). With `value`, the target is the pixels whose palette
    index equals it (DAVIS / YouTube-VOS multi-object PNGs); without, any non-zero pixel."""

    paths: list[Path | None]
    size: tuple[int, int]
    value: int | None = None

    def load(self) -> np.ndarray:
        out = np.zeros((len(self.paths), *self.size), dtype=bool)
        for t, p in enumerate(self.paths):
            if p is None:
                continue
            labels = read_label_png(p)
            if labels.shape != tuple(self.size):
                raise FormatError(f"{p}: annotation is {labels.shape[1]}x{labels.shape[0]}, "
                                  f"but the video is {self.size[1]}x{self.size[0]}")
            out[t] = labels > 0 if self.value is None else labels == self.value
        return out


@dataclass
class ArrayTrack:
    """Masks already in memory (polygon rasterisations, tests)."""

    masks: np.ndarray

    def load(self) -> np.ndarray:
        return np.asarray(self.masks, dtype=bool)


@dataclass
class CocoTrack:
    """A COCO annotation's `segmentation` (polygons or RLE), rasterised on load like LISA (`coco_segmentation_mask`).
    Kept as the raw JSON value so a benchmark of 10k sentences does not hold 10k full-resolution masks."""

    segmentation: Any
    size: tuple[int, int]
    source: str

    def load(self) -> np.ndarray:
        return coco_segmentation_mask(self.segmentation, self.size[0], self.size[1], self.source)[None]


@dataclass
class LabelMeTrack:
    """ReasonSeg polygons, rasterised on load like LISA (`labelme_mask`); `value` 1 = target, 255 = ignore."""

    shapes: list[dict]
    size: tuple[int, int]
    value: int
    source: str

    def load(self) -> np.ndarray:
        return (labelme_mask(self.shapes, self.size[0], self.size[1], self.source) == self.value)[None]


def read_label_png(path: Path) -> np.ndarray:
    """An annotation PNG as integer labels: palette *indices* for P-mode (not colour luma, as cv2 would give)."""
    with open_image_checked(path) as im:
        im.load()
        if im.mode == "P" or im.mode == "L":
            return np.asarray(im)
        if im.mode == "1":
            return np.asarray(im).astype(np.uint8)
        return np.asarray(im.convert("L"))


@dataclass
class Sample:
    """One benchmark unit.

    `key` is unique within the benchmark and names the prediction files (`video/exp_id`, `image_id/sent_id`, a
    question id). `frames` are the media files the sample covers, in order, with `frame_names` their official names
    (used in prediction layouts). `targets` hold one track per target instance (unioned for single-target metrics);
    `ignore` marks pixels excluded from scoring (ReasonSeg). `prompts` are region prompts given to the model,
    `options` / `answer` the multiple-choice part; `meta` keeps protocol fields (type_id, q_type, video, exp_id...).
    """

    key: str
    text: str
    frames: list[Path]
    frame_names: list[str]
    size: tuple[int, int]
    targets: list[MaskTrack] = field(default_factory=list)
    ignore: MaskTrack | None = None
    prompts: list[VisualPrompt] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def gt_union(self) -> np.ndarray:
        """All targets unioned, bool [T, H, W] (MeViS/ReVOS sum instances; any non-zero is foreground)."""
        out = np.zeros((self.num_frames, *self.size), dtype=bool)
        for track in self.targets:
            m = track.load()
            if m.shape != out.shape:
                raise FormatError(f"{self.key}: ground truth has shape {m.shape}, expected {out.shape}")
            out |= m
        return out

    def gt_instances(self) -> np.ndarray:
        """One mask stack per target, bool [N, T, H, W]."""
        if not self.targets:
            return np.zeros((0, self.num_frames, *self.size), dtype=bool)
        return np.stack([t.load() for t in self.targets])

    def ignore_mask(self) -> np.ndarray | None:
        return None if self.ignore is None else self.ignore.load()

    def clip(self) -> Clip:
        """Decode the sample's frames (what a predictor sees)."""
        frames = np.stack([load_image(p) for p in self.frames])
        fps = None if len(self.frames) == 1 and not self.meta.get("video") else self.meta.get("fps", 6.0)
        return Clip(frames, fps=fps, source=str(self.frames[0].parent if len(self.frames) > 1 else self.frames[0]))


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header only."""
    with open_image_checked(path) as im:
        return im.height, im.width


# --- small validation helpers shared by the readers ----------------------------------------------------------


def require(obj: Any, key: str, source: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """`obj[key]`, or a FormatError naming the file and the field path."""
    if not isinstance(obj, dict):
        raise FormatError(f"{source}: {where or 'top level'} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise FormatError(f"{source}: missing field '{where + '.' if where else ''}{key}'")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise FormatError(f"{source}: field '{where + '.' if where else ''}{key}' must be {names}, "
                          f"got {type(value).__name__}")
    return value


def load_json(path: Path, encodings: Sequence[str] = ("utf-8",)) -> Any:
    """Parse a JSON file; any failure is a FormatError naming the file."""

    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    if tuple(encodings) == ("utf-8",):
        return read_json(path, FormatError, max_bytes=1 << 31)
    last: Exception | None = None
    for enc in encodings:
        try:
            return parse_json(path.read_text(encoding=enc), str(path))
        except UnicodeDecodeError as e:
            last = e
    raise FormatError(f"{path}: cannot decode text ({last})")


def validate_rle(rle: Any, size: tuple[int, int], source: str) -> None:
    """`core.masks.validate_rle` for the readers: a malformed mask dict fails when it is read, naming the field,
    instead of half-way through scoring."""
    try:
        mask_ops.validate_rle(rle, size, source)
    except MaskError as e:
        raise FormatError(str(e)) from None


def member(root: Path, name: str, source: str) -> Path:
    """`root / name` for a file or folder an annotation names, refused (FormatError naming the field) when the name
    is absolute or climbs out of `root` with `..`: a dataset file must not make a reader open files elsewhere."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise FormatError(f"{source}: {name!r} is not a file name")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise FormatError(f"{source}: '{name}' is not a name inside the dataset folder (absolute or '..' path)")
    return root / rel


def frame_file(folder: Path, name: str, source: str) -> Path:
    """The image file of frame `name` in `folder` (.jpg, .jpeg or .png); FormatError if it is missing."""
    for ext in (".jpg", ".jpeg", ".png"):
        p = member(folder, f"{name}{ext}", source)
        if p.is_file():
            return p
    raise FormatError(f"{source}: frame '{name}' is listed but {folder / name}.jpg does not exist")


def labelme_mask(shapes: list[dict], height: int, width: int, source: str) -> np.ndarray:
    """Rasterise ReasonSeg (LabelMe-like) polygons exactly as LISA does: uint8 [H, W] with 1 = target, 255 = ignore.

    Shapes labelled "flag" (any case) are dropped; the others are drawn largest-area first (area measured with the same
    rasteriser), each as a 1-px closed polyline plus a fill, with coordinates truncated to int32, so smaller shapes
    overwrite larger ones. Value 255 when "ignore" is in the label (any case), else 1.
    """
    polys, areas = [], []
    for k, s in enumerate(shapes):
        label = require(s, "label", source, f"shapes[{k}]", str)
        points = require(s, "points", source, f"shapes[{k}]", list)
        if label.lower() == "flag":  # LISA compares the lower-cased label
            continue
        try:
            pts = np.array([points], dtype=np.int32)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a coordinate outside int32
            raise FormatError(f"{source}: field 'shapes[{k}].points' must be a list of [x, y] pairs") from None
        if pts.ndim != 3 or pts.shape[2] != 2:
            raise FormatError(f"{source}: field 'shapes[{k}].points' must be a list of [x, y] pairs")
        tmp = np.zeros((height, width), np.uint8)
        cv2.polylines(tmp, pts, True, 1, 1)
        cv2.fillPoly(tmp, pts, 1)
        areas.append(tmp.sum())
        polys.append((label, pts))
    mask = np.zeros((height, width), np.uint8)
    for idx in list(np.argsort(areas)[::-1]):
        label, pts = polys[idx]
        value = 255 if "ignore" in label.lower() else 1
        cv2.polylines(mask, pts, True, value, 1)
        cv2.fillPoly(mask, pts, value)
    return mask


def validate_coco_segmentation(segm: Any, size: tuple[int, int], source: str) -> None:
    """Structure check of a COCO `segmentation` without rasterising: polygons of ≥ 3 points with an even number of
    coordinates, or RLE(s) of the image size."""
    if not segm:
        return
    if isinstance(segm, list) and all(isinstance(p, list) for p in segm):
        for k, p in enumerate(segm):
            if len(p) < 6 or len(p) % 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p):
                raise FormatError(f"{source}[{k}]: a polygon needs ≥ 3 (x, y) number pairs")
        return
    for k, r in enumerate([segm] if isinstance(segm, dict) else segm if isinstance(segm, list) else [segm]):
        validate_rle(r, size, f"{source}[{k}]" if not isinstance(segm, dict) else source)


def coco_segmentation_mask(segm: Any, height: int, width: int, source: str) -> np.ndarray:
    """A COCO annotation's segmentation as the LISA/refer evaluators see it: decode every part (polygons via
    pycocotools, or RLEs), *sum* the parts as uint8, and keep pixels equal to 1.

    Pixels covered by two overlapping parts sum to 2; LISA's histogram IoU ignores values other than 0/1, which is
    the same as treating them as background — so we do. Empty segmentation → empty mask.
    """
    from pycocotools import mask as coco_mask

    if not segm:
        return np.zeros((height, width), bool)
    try:
        if isinstance(segm, list) and isinstance(segm[0], list):
            parts = [list(map(float, p)) for p in segm]
            if any(len(p) < 6 or len(p) % 2 for p in parts):
                raise FormatError(f"{source}: polygon with fewer than 3 points or an odd number of coordinates")
            rles = coco_mask.frPyObjects(parts, height, width)
        elif isinstance(segm, dict):
            rles = [mask_ops._to_coco(segm, source)]
        else:
            rles = [mask_ops._to_coco(r, source) for r in segm]
        for r in rles:
            if tuple(r["size"]) != (height, width):
                raise FormatError(f"{source}: RLE size {r['size']} does not match the image {height}x{width}")
        m = coco_mask.decode(rles)
    except MaskError as e:
        raise FormatError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise FormatError(f"{source}: malformed segmentation ({e})") from None
    if m.ndim == 3:
        m = m.sum(axis=2)
    return m.astype(np.uint8) == 1
