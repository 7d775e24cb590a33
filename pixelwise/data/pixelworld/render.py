"""Rasterise a `Scene` into RGB frames and exact per-object masks, vectorised with OpenCV/numpy.

Each object is drawn into a small patch around it with `cv2.fillPoly(..., LINE_AA, shift=4)`, which gives an
anti-aliased coverage in 0..255; the image is alpha-composited back to front (z-order) and the object's mask is
"coverage >= 50 %". The *visible* mask of an object is its mask minus the masks of every object above it, so
masks are exact by construction: they are what the pixels show, including holes (the ring) and occlusion.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.scene import SUBPIXEL, Obj, Scene

_SHIFT = 4  # 2**4 = 16 = SUBPIXEL


def render_background(bg: dict, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] background, reproducible from its JSON description (kind, colors, seed)."""
    rng = np.random.default_rng(int(bg["seed"]))
    base = np.asarray(bg["color"], np.float32)
    kind = bg["kind"]
    img = np.empty((height, width, 3), np.float32)
    img[:] = base
    if kind == "gradient":
        a = np.deg2rad(float(bg["angle"]))
        xs = (np.arange(width, dtype=np.float32) - width / 2) * np.float32(np.cos(a))
        ys = (np.arange(height, dtype=np.float32) - height / 2) * np.float32(np.sin(a))
        proj = ys[:, None] + xs[None, :]
        u = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
        img = base[None, None] + (np.asarray(bg["color2"], np.float32) - base)[None, None] * u[..., None]
    elif kind == "noise":
        # smooth blotches + fine grain, both low-contrast and gray (no hue), so they never look like an object
        coarse = rng.standard_normal((max(2, height // 16), max(2, width // 16)), dtype=np.float32)
        coarse = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        fine = rng.standard_normal((height, width), dtype=np.float32)
        img = img + (coarse * 14 + fine * 6)[..., None]
    elif kind == "clutter":
        canvas = np.zeros((height, width), np.float32)
        n = int(rng.integers(10, 22))
        for _ in range(n):
            delta = float(rng.uniform(-35, 35))
            if rng.random() < 0.6:
                p1 = tuple(int(v) for v in rng.integers(0, max(width, height), 2))
                p2 = tuple(int(v) for v in rng.integers(0, max(width, height), 2))
                cv2.line(canvas, p1, p2, delta, 1, cv2.LINE_AA)
            else:
                c = tuple(int(v) for v in rng.integers(0, max(width, height), 2))
                cv2.circle(canvas, c, int(rng.integers(1, 3)), delta, -1, cv2.LINE_AA)
        img = img + canvas[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


@lru_cache(maxsize=8)
def _patterns(height: int, width: int) -> dict[str, np.ndarray]:
    """Texture masks over the whole frame (bool [H, W]): diagonal stripes and a dot lattice, scale ~ resolution."""
    s = max(height, width) / 128.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = 5.0 * s
    stripes = np.mod(xx + yy, period) < period * 0.45
    dp = 5.0 * s
    dots = ((np.mod(xx, dp) - dp / 2) ** 2 + (np.mod(yy, dp) - dp / 2) ** 2) <= (1.1 * s) ** 2
    return {"striped": stripes, "dotted": dots}


def _texture_color(rgb: np.ndarray, texture: str) -> np.ndarray:
    if texture == "striped":
        return rgb * 0.5  # darker stripes keep the hue
    return rgb * 0.4 + 255 * 0.6  # light dots


def object_rgb(color: str) -> np.ndarray:
    return np.asarray(vocab.COLORS[color], np.float32)


def _polys(shape: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray | None]:
    outline = vocab.OUTLINES[shape] * r + np.array([cx, cy])
    outer = np.round(outline * SUBPIXEL).astype(np.int32)
    inner = None
    if shape == "ring":
        inner = np.round((vocab.OUTLINES["circle"] * r * vocab.RING_HOLE_RATIO + np.array([cx, cy])) * SUBPIXEL)
        inner = inner.astype(np.int32)
    return outer, inner


def coverage(obj: Obj, t: int, height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Anti-aliased coverage (uint8 patch) of one object on frame t and the patch's (x0, y0, x1, y1), or None if
    the object is entirely outside the frame."""
    cx, cy, r = float(obj.x[t]), float(obj.y[t]), float(obj.r[t])
    ext = r * 1.25 + 2
    x0, y0 = max(0, int(np.floor(cx - ext))), max(0, int(np.floor(cy - ext)))
    x1, y1 = min(width, int(np.ceil(cx + ext)) + 1), min(height, int(np.ceil(cy + ext)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    outer, inner = _polys(obj.shape, cx - x0, cy - y0, r)
    cv2.fillPoly(patch, [outer], 255, cv2.LINE_AA, _SHIFT)
    if inner is not None:
        cv2.fillPoly(patch, [inner], 0, cv2.LINE_AA, _SHIFT)
    return patch, (x0, y0, x1, y1)


def render(scene: Scene, frames: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render frames (uint8 [T, H, W, 3]), visible masks (bool [N, T, H, W], objects in `scene.objects` order) and
    each object's unoccluded in-frame area (int [N, T]), which tells how much of an object is hidden."""
    H, W = scene.height, scene.width
    idx = list(range(scene.num_frames)) if frames is None else list(frames)
    bg = render_background(scene.background, H, W)
    pats = _patterns(H, W)
    order = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].z)
    out = np.empty((len(idx), H, W, 3), np.uint8)
    vis = np.zeros((len(scene.objects), len(idx), H, W), bool)
    area = np.zeros((len(scene.objects), len(idx)), np.int64)
    for k, t in enumerate(idx):
        img = bg.copy()
        masks: list[tuple[int, np.ndarray, tuple[int, int, int, int]]] = []
        for i in order:
            o = scene.objects[i]
            cov = coverage(o, t, H, W)
            if cov is None:
                continue
            patch, (x0, y0, x1, y1) = cov
            a = patch.astype(np.float32)[..., None] * (1.0 / 255.0)
            rgb = object_rgb(o.color_at(t))
            region = img[y0:y1, x0:x1]
            if o.texture == "solid":
                col = rgb[None, None]
            else:
                col = np.where(pats[o.texture][y0:y1, x0:x1, None], _texture_color(rgb, o.texture)[None, None],
                               rgb[None, None])
            region *= 1.0 - a
            region += col * a
            m = patch >= 128
            area[i, k] = int(np.count_nonzero(m))
            masks.append((i, m, (x0, y0, x1, y1)))
        out[k] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        occupied = np.zeros((H, W), bool)
        for i, m, (x0, y0, x1, y1) in reversed(masks):  # top to bottom
            occ = occupied[y0:y1, x0:x1]
            vis[i, k, y0:y1, x0:x1] = m & ~occ
            occ |= m
    return out, vis, area
