"""Drawing masks: colored overlays with contours and labels, side-by-side comparisons, PNG / GIF / MP4 output.

Object colors come from a fixed palette indexed by object id, so an object keeps its color on every frame and in
every view (overlay, demo, answer text highlighting).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from pixelwise.core.io import atomic_write
from pixelwise.core.media import save_video
from pixelwise.core.prompts import Box, MaskPrompt, Point

if TYPE_CHECKING:
    from pixelwise.core.prompts import VisualPrompt

# Well-separated, colorblind-friendly-ish colors (RGB); cycled by object id.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 225, 25), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128), (128, 128, 128),
)


def color_for(obj_id: int) -> tuple[int, int, int]:
    return PALETTE[obj_id % len(PALETTE)]


def color_hex(obj_id: int, color: tuple[int, int, int] | None = None) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(color or color_for(obj_id)))


MIN_CONTRAST = 120.0  # RGB distance between a mask's colour and the mean colour of the pixels it covers


def contrasting_color(obj_id: int, under: Sequence[float] | None) -> tuple[int, int, int]:
    """The object's palette colour, or, when it is too close to the colour under the mask (a red mask on a red
    object), the next palette colour that contrasts with it (the most distant one if none does)."""
    if under is None:
        return color_for(obj_id)
    under = np.asarray(under, np.float32)
    best, best_d = color_for(obj_id), -1.0
    for step in range(len(PALETTE)):
        c = color_for(obj_id + step)
        d = float(np.linalg.norm(np.asarray(c, np.float32) - under))
        if d >= MIN_CONTRAST:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def object_colors(frames: Sequence[np.ndarray], masks_per_object: Sequence[Sequence[np.ndarray]],
                  ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """One colour per object for a whole result (every frame and view keeps it): `contrasting_color` against the
    mean colour under the object's mask over the given frames."""
    colors = []
    for oid, masks in zip(ids, masks_per_object):
        total, count = np.zeros(3), 0
        for frame, m in zip(frames, masks):
            m = np.asarray(m, bool)
            if m.any() and frame.ndim == 3:
                total += frame[m].reshape(-1, frame.shape[-1])[:, :3].astype(np.float64).sum(0)
                count += int(m.sum())
        colors.append(contrasting_color(oid, total / count if count else None))
    return colors


OVERLAY_MIN_SIDE = 512  # media smaller than this are enlarged (integer, nearest-neighbour) for drawing
PROMPT_COLOR = (255, 220, 0)


def overlay_scale(height: int, width: int) -> int:
    """Integer zoom for drawing on small media (128 px PixelWorld frames are drawn at 512 px); 1 for large ones."""
    return max(1, OVERLAY_MIN_SIDE // max(height, width, 1))


def enlarge(image: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour zoom by an integer factor (pixels stay sharp, masks stay aligned)."""
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def overlay_masks(
    frame: np.ndarray,
    masks: Sequence[np.ndarray],
    ids: Sequence[int] | None = None,
    labels: Sequence[str | None] | None = None,
    alpha: float = 0.45,
    contour: bool = True,
    prompts: Sequence[VisualPrompt] = (),
    scale: int | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Blend masks onto one RGB frame, outline them, label each beside its mask and draw the visual prompts.

    The frame is enlarged `scale` times (default `overlay_scale`: small media are drawn at >= 512 px) with nearest
    neighbours, masks with it, so thin outlines and labels stay readable. Each outline is drawn twice, a wider stroke
    in black or white (whichever contrasts with the pixels under the mask) under the object's colour, so a mask stays
    visible on an object of its own colour. Labels go above, below, right or left of the mask, wherever they cover no
    mask pixel (the least covering place otherwise). `prompts` (points, boxes, mask prompts of this frame) are drawn
    in yellow: points as dots (a cross for a negative point), boxes as rectangles, masks as dashed-looking outlines.
    """
    k = overlay_scale(*frame.shape[:2]) if scale is None else int(scale)
    src = enlarge(np.asarray(frame, np.uint8), k)
    masks = [enlarge(np.asarray(m, bool), k) for m in masks]
    out = src.astype(np.float32).copy()
    ids = list(range(len(masks))) if ids is None else list(ids)
    colors = [color_for(oid) for oid in ids] if colors is None else list(colors)
    for m, color in zip(masks, colors):
        if m.any():
            out[m] = out[m] * (1 - alpha) + np.array(color, np.float32) * alpha
    out = out.clip(0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 200))
    occupied = np.zeros((h, w), bool)
    for m in masks:
        occupied |= m
    for m, color in zip(masks, colors):
        if contour and m.any():
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            under = src[m].astype(np.float32).mean(0) if src.ndim == 3 else np.full(3, 128.0)
            cv2.drawContours(out, cs, -1, _ink(under), thickness + 1)
            cv2.drawContours(out, cs, -1, color, thickness)
    _draw_prompts(out, prompts, k, thickness)
    for j, (m, oid) in enumerate(zip(masks, ids)):
        if not m.any():
            continue
        text = labels[j] if labels is not None and j < len(labels) and labels[j] else f"[{oid}]"
        x, y = _label_place(occupied, m, text, _font_scale(h, w))
        _draw_label(out, text, x, y, colors[j])
        tw, th, base = _text_size(text, _font_scale(h, w))
        occupied[max(0, y - th - base):y, x:x + tw + 2] = True  # the next label keeps off this one
    return out


def _ink(rgb: np.ndarray | Sequence[float]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts with a colour."""
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 128 else (255, 255, 255)


def _font_scale(h: int, w: int) -> float:
    return max(0.35, min(h, w) / 600)


def _text_size(text: str, scale: float) -> tuple[int, int, int]:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    return tw, th, base


def _label_place(occupied: np.ndarray, mask: np.ndarray, text: str, scale: float) -> tuple[int, int]:
    """(x, y-of-the-label's-bottom) beside the mask's box: above, below, right, left; the first covering no mask."""
    h, w = mask.shape
    tw, th, base = _text_size(text, scale)
    lw, lh = tw + 2, th + base
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    gap = 2
    candidates = [(x1, y1 - gap), (x1, y2 + gap + lh), (x2 + gap, y1 + lh), (x1 - gap - lw, y1 + lh)]
    best, best_cover = None, None
    for x, y in candidates:
        x = min(max(0, x), max(0, w - lw))
        y = min(max(lh, y), h)
        cover = int(occupied[y - lh:y, x:x + lw].sum())
        if cover == 0:
            return x, y
        if best_cover is None or cover < best_cover:
            best, best_cover = (x, y), cover
    return best


def _draw_label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    """A filled label box whose bottom-left corner is (x, y), clipped into the image."""
    h, w = img.shape[:2]
    scale = _font_scale(h, w)
    tw, th, base = _text_size(text, scale)
    x = min(max(0, x), max(0, w - tw - 2))
    y = max(th + base, y)
    cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y), color, -1)
    cv2.putText(img, text, (x + 1, y - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0) if sum(np.multiply(color, (0.299, 0.587, 0.114))) > 140 else (255, 255, 255), 1,
                cv2.LINE_AA)


def _draw_prompts(img: np.ndarray, prompts: Sequence[VisualPrompt], k: int, thickness: int) -> None:
    """Points, boxes and mask prompts (media coordinates, zoomed by k) in yellow with a dark edge."""

    h, w = img.shape[:2]
    radius = max(4, round(min(h, w) / 70))
    for p in prompts:
        if isinstance(p, Point):
            c = (int(round((p.x + 0.5) * k)), int(round((p.y + 0.5) * k)))
            if p.positive:
                cv2.circle(img, c, radius + 1, (0, 0, 0), -1)
                cv2.circle(img, c, radius, PROMPT_COLOR, -1)
            else:
                cv2.drawMarker(img, c, (0, 0, 0), cv2.MARKER_TILTED_CROSS, 2 * radius + 2, thickness + 2)
                cv2.drawMarker(img, c, PROMPT_COLOR, cv2.MARKER_TILTED_CROSS, 2 * radius, thickness)
        elif isinstance(p, Box):
            a = (int(round(p.x1 * k)), int(round(p.y1 * k)))
            b = (int(round(p.x2 * k)) - 1, int(round(p.y2 * k)) - 1)
            cv2.rectangle(img, a, b, (0, 0, 0), thickness + 2)
            cv2.rectangle(img, a, b, PROMPT_COLOR, thickness)
        elif isinstance(p, MaskPrompt):
            m = enlarge(np.asarray(p.mask, bool), k)
            if m.shape != (h, w):
                continue
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            for c in cs:  # every other run of 6 contour points: a dashed outline, unlike the masks' solid ones
                for s in range(0, len(c), 12):
                    cv2.polylines(img, [c[s:s + 6]], False, PROMPT_COLOR, thickness + 1)


def side_by_side(pred: np.ndarray, gt: np.ndarray, gap: int = 4) -> np.ndarray:
    """Prediction | ground truth, with titles, for evaluation reports."""
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {gt.shape}")
    h, w = pred.shape[:2]
    canvas = np.full((h, 2 * w + gap, 3), 255, np.uint8)
    canvas[:, :w], canvas[:, w + gap:] = pred, gt
    _draw_label(canvas, "prediction", 0, 0, (40, 40, 40))
    _draw_label(canvas, "ground truth", w + gap, 0, (40, 40, 40))
    return canvas


def save_image(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(np.asarray(image, np.uint8)).save(f, format=_pil_format(path))
    return path


def save_animation(path: str | Path, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """GIF (palette, looping) or MP4/WEBM by extension."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        return save_video(path, frames, fps=fps)
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, int(round(1000 / fps))), loop=0)
    return path


def _pil_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")
