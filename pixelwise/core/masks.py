"""Mask operations shared by every part of pixelwise.

Masks are boolean numpy arrays `[H, W]` (or stacks `[N, H, W]`). COCO RLE goes through pycocotools so our RLEs
are byte-identical to the ones every benchmark ships; in JSON, `counts` is the compressed string form.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from pixelwise.core.errors import MaskError
from pixelwise.core.io import atomic_write
from pixelwise.core.media import open_image_checked

RLE = dict[str, Any]  # {"size": [h, w], "counts": str}
# the largest mask an RLE may claim (the media limit per frame, PIXELWISE_MAX_PIXELS): pycocotools allocates h*w
# before reading a run, and a size of 10^6 x 10^6 crashes the process (SIGSEGV) instead of raising
MAX_MASK_PIXELS = int(os.environ.get("PIXELWISE_MAX_PIXELS", 8192 * 8192))


def _as_bool_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"{what}: expected a 2-D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def rle_encode(mask: np.ndarray) -> RLE:
    """Binary mask [H, W] -> compressed COCO RLE with a str `counts` (JSON-ready)."""
    m = _as_bool_mask(mask)
    rle = coco_mask.encode(np.asfortranarray(m, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_encode_many(masks: np.ndarray) -> list[RLE]:
    """Stack [N, H, W] -> list of RLEs, encoded in one pycocotools call."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise MaskError(f"expected masks [N, H, W], got {masks.shape}")
    if masks.shape[0] == 0:
        return []
    rles = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def _to_coco(rle: Any, source: str) -> dict[str, Any]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskError(f"{source}: an RLE must be an object with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise MaskError(f"{source}: RLE 'size' must be [height, width] of non-negative integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h * w > MAX_MASK_PIXELS:
        raise MaskError(f"{source}: RLE size {h}x{w} is over the limit of {MAX_MASK_PIXELS} pixels per mask "
                        "(PIXELWISE_MAX_PIXELS)")
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE: run lengths that must add up to h*w
        if len(counts) > h * w + 1:  # more runs than pixels: refused before looking at 10^7 elements
            raise MaskError(f"{source}: uncompressed RLE has {len(counts)} runs for {h * w} pixels")
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise MaskError(f"{source}: uncompressed RLE counts must be non-negative integers")
        if sum(counts) != h * w:
            raise MaskError(f"{source}: RLE counts sum to {sum(counts)}, but size {h}x{w} needs {h * w}")
        return coco_mask.frPyObjects({"size": [h, w], "counts": list(map(int, counts))}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="strict") if counts.isascii() else None
    if not isinstance(counts, bytes):
        raise MaskError(f"{source}: RLE 'counts' must be an ASCII string or a list of integers")
    return {"size": [h, w], "counts": counts}


def validate_rle(rle: Any, size: tuple[int, int] | None, source: str = "RLE") -> None:
    """Check an RLE without decoding it: structure, `size` (when given) equal to the frame size, runs covering
    exactly H x W. A `MaskError` names `source` and what is wrong."""
    coco = _to_coco(rle, source)
    h, w = coco["size"]
    if size is not None and (h, w) != tuple(size):
        raise MaskError(f"{source}: RLE size {h}x{w} does not match the frame size {size[0]}x{size[1]}")
    if isinstance(coco["counts"], bytes):
        total = _compressed_run_total(coco["counts"], source)
        if total != h * w:
            raise MaskError(f"{source}: RLE runs cover {total} pixels, but {h}x{w} needs {h * w}")


def rle_decode(rle: Any, expected_size: tuple[int, int] | None = None, source: str = "RLE") -> np.ndarray:
    """COCO RLE (compressed string or uncompressed list) -> bool [H, W]; validated, never crashes on junk."""
    coco = _to_coco(rle, source)
    h, w = coco["size"]
    if expected_size is not None and (h, w) != tuple(expected_size):
        raise MaskError(f"{source}: RLE size {h}x{w} does not match the expected {expected_size[0]}x{expected_size[1]}")
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    if isinstance(coco["counts"], bytes):
        # pycocotools does not check that a compressed string covers exactly h*w pixels: it silently
        # truncates or zero-fills. Check the run total ourselves.
        total = _compressed_run_total(coco["counts"], source)
        if total != h * w:
            raise MaskError(f"{source}: RLE runs cover {total} pixels, but size {h}x{w} needs {h * w}")
    return coco_mask.decode(coco).astype(bool)


def _compressed_run_total(counts: bytes, source: str) -> int:
    """Sum of run lengths in a COCO compressed RLE string (5 bits per char, runs delta-coded two back)."""
    runs: list[int] = []
    i, n = 0, len(counts)
    while i < n:
        x, shift, more = 0, 0, True
        while more:
            if i >= n:
                raise MaskError(f"{source}: RLE counts string ends mid-number")
            c = counts[i] - 48
            if c < 0 or c > 63:
                raise MaskError(f"{source}: RLE counts has an invalid character {chr(counts[i])!r}")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            i += 1
            shift += 5
            if not more and (c & 0x10):
                x |= -1 << shift
        if len(runs) > 2:  # runs after the first two are stored as deltas to the run two places back
            x += runs[-2]
        if x < 0:
            raise MaskError(f"{source}: RLE counts decode to a negative run length")
        runs.append(x)
    return sum(runs)


def rle_area(rle: RLE) -> int:
    return int(coco_mask.area(_to_coco(rle, "RLE")))


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (lists of x1,y1,x2,y2,...) -> bool [H, W], rasterised by pycocotools like COCO itself."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=bool)
    for p in polys:
        if len(p) % 2:
            raise MaskError(f"polygon has an odd number of coordinates ({len(p)})")
    rles = coco_mask.frPyObjects(polys, height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks; two empty masks have IoU 1 (nothing to find, nothing found)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise MaskError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] between stacks a [N, H, W] and b [M, H, W] (empty/empty = 1)."""
    a = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    b = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return iou


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x1, y1, x2, y2), exclusive x2/y2, or None for an empty mask."""
    m = _as_bool_mask(mask)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes in continuous pixel coordinates (area = (x2 − x1)(y2 − y1))."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a bool mask with nearest-neighbour sampling (never blurs labels)."""
    m = _as_bool_mask(mask)
    if m.shape == (height, width):
        return m.copy()
    return cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([resize_mask(m, height, width) for m in masks]) if len(masks) else np.zeros((0, height, width), bool)


def connected_components(mask: np.ndarray, connectivity: int = 8) -> list[np.ndarray]:
    """Split a mask into its connected parts, largest first."""
    m = _as_bool_mask(mask).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=connectivity)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    return [labels == k for k in order]


def save_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as a 1-bit PNG (0 / 255 when viewed), atomically."""

    m = _as_bool_mask(mask)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        Image.fromarray(m).save(f, format="PNG")
    return path


def load_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG: any non-zero pixel is foreground. Palette PNGs are read by index, not color."""

    with open_image_checked(path) as im:
        if im.mode == "1":
            return np.asarray(im, dtype=bool)
        if im.mode == "P":
            return np.asarray(im) > 0
        return np.asarray(im.convert("L")) > 0
