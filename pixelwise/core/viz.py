"""Drawing masks: colored overlays with contours and labels, side-by-side comparisons, PNG / GIF / MP4 output.

Object colors come from a fixed palette indexed by object id, so an object keeps its color on every frame and in
every view (overlay, demo, answer text highlighting).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
from PIL import Image

from pixelwise.core.io import atomic_write

if TYPE_CHECKING:
    from pixelwise.core.results import Result

# Well-separated, colorblind-friendly-ish colors (RGB); cycled by object id.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 225, 25), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128), (128, 128, 128),
)


def color_for(obj_id: int) -> tuple[int, int, int]:
    return PALETTE[obj_id % len(PALETTE)]


def color_hex(obj_id: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color_for(obj_id))


def overlay_masks(
    frame: np.ndarray,
    masks: Sequence[np.ndarray],
    ids: Sequence[int] | None = None,
    labels: Sequence[str | None] | None = None,
    alpha: float = 0.45,
    contour: bool = True,
) -> np.ndarray:
    """Blend masks onto one RGB frame, draw their contours and put a label at each object's top-left.

    Each contour is drawn twice, a wider stroke in black or white (whichever contrasts with the pixels under the
    mask) under the object's colour, so a mask stays visible on an object of its own colour (a red fill on a red
    object)."""
    src = frame
    out = frame.astype(np.float32).copy()
    ids = list(range(len(masks))) if ids is None else list(ids)
    for m, oid in zip(masks, ids):
        m = np.asarray(m, bool)
        if m.any():
            out[m] = out[m] * (1 - alpha) + np.array(color_for(oid), np.float32) * alpha
    out = out.clip(0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 200))
    for k, (m, oid) in enumerate(zip(masks, ids)):
        m = np.asarray(m, bool)
        if not m.any():
            continue
        if contour:
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            under = np.asarray(src, np.float32)[m].mean(0) if src.ndim == 3 else np.full(3, 128.0)
            lum = 0.299 * under[0] + 0.587 * under[1] + 0.114 * under[2]
            cv2.drawContours(out, cs, -1, (0, 0, 0) if lum > 128 else (255, 255, 255), thickness + 1)
            cv2.drawContours(out, cs, -1, color_for(oid), thickness)
        text = labels[k] if labels is not None and k < len(labels) and labels[k] else f"[{oid}]"
        ys, xs = np.nonzero(m)
        _draw_label(out, text, int(xs.min()), int(ys.min()), color_for(oid))
    return out


def _draw_label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    scale = max(0.3, min(h, w) / 600)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(0, x), max(0, w - tw - 2))
    y = max(th + base, y)
    cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y), color, -1)
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    cv2.putText(img, text, (x + 1, y - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0) if lum > 140 else (255, 255, 255), 1, cv2.LINE_AA)


def overlay_result(frames: np.ndarray, result: "Result") -> list[np.ndarray]:
    """One overlay per frame of the result (frames must be the result's frames, [T, H, W, 3])."""
    if len(frames) != result.num_frames:
        raise ValueError(f"{len(frames)} frames given for a result of {result.num_frames} frames")
    ids = [o.id for o in result.objects]
    labels = [o.label or f"[{o.id}]" for o in result.objects]
    return [
        overlay_masks(frames[t], [o.masks[t] for o in result.objects], ids, labels)
        for t in range(result.num_frames)
    ]


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
        from pixelwise.core.media import save_video

        return save_video(path, frames, fps=fps)
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, int(round(1000 / fps))), loop=0)
    return path


def _pil_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")
