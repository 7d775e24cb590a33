"""The PixelWorld scene graph: objects with attributes, z-order and a per-frame state (position, radius, color).

A `Scene` is the single source of truth: frames and exact masks are rendered from it (`render.py`), expressions
are resolved against it (`grammar.py`), and it round-trips through JSON exactly (positions are stored on a 1/16 px
grid, the sub-pixel precision the rasteriser uses), so a checker can re-derive every answer from the exported file.
An image is a scene of one frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelwise.data.pixelworld import vocab

SUBPIXEL = 16.0  # positions/radii are multiples of 1/16 px (cv2 shift=4)


def quantize(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a, np.float64) * SUBPIXEL) / SUBPIXEL


@dataclass
class Obj:
    """One object. `x`, `y`, `r` are per-frame center and circumradius (pixels); `color_change` = (frame, new color)."""

    id: int
    shape: str
    color: str
    size: str
    texture: str
    z: int
    x: np.ndarray
    y: np.ndarray
    r: np.ndarray
    motion: str = "static"
    color_change: tuple[int, str] | None = None
    size_change: str | None = None  # final size category when the object grows/shrinks

    def color_at(self, t: int) -> str:
        if self.color_change is not None and t >= self.color_change[0]:
            return self.color_change[1]
        return self.color

    @property
    def colors(self) -> set[str]:
        return {self.color} | ({self.color_change[1]} if self.color_change else set())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "shape": self.shape, "color": self.color, "size": self.size, "texture": self.texture,
            "z": self.z, "motion": self.motion,
            "color_change": list(self.color_change) if self.color_change else None, "size_change": self.size_change,
            "x": quantize(self.x).tolist(), "y": quantize(self.y).tolist(), "r": quantize(self.r).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Obj:
        cc = d.get("color_change")
        return cls(
            id=int(d["id"]), shape=d["shape"], color=d["color"], size=d["size"], texture=d["texture"], z=int(d["z"]),
            x=np.asarray(d["x"], np.float64), y=np.asarray(d["y"], np.float64), r=np.asarray(d["r"], np.float64),
            motion=d.get("motion", "static"), color_change=(int(cc[0]), cc[1]) if cc else None,
            size_change=d.get("size_change"),
        )


@dataclass
class Scene:
    width: int
    height: int
    num_frames: int
    background: dict[str, Any]
    objects: list[Obj] = field(default_factory=list)

    def obj(self, obj_id: int) -> Obj:
        for o in self.objects:
            if o.id == obj_id:
                return o
        raise KeyError(obj_id)

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "num_frames": self.num_frames,
                "background": dict(self.background), "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scene:
        return cls(width=int(d["width"]), height=int(d["height"]), num_frames=int(d["num_frames"]),
                   background=dict(d["background"]), objects=[Obj.from_json(o) for o in d["objects"]])

    def copy(self) -> Scene:
        return Scene.from_json(self.to_json())


# ----------------------------------------------------------------------------------------------------------------
# Sampling


@dataclass
class SceneConfig:
    """What a split asks of its scenes. `forbidden`/`required` are (color, shape) combinations."""

    resolution: int = 128
    num_frames: int = 1
    min_objects: int = 3
    max_objects: int = 7
    forbidden: frozenset[tuple[str, str]] = frozenset()
    required: tuple[tuple[str, str], ...] = ()
    color_change_p: float = 0.15
    size_change_p: float = 0.1


def sample_background(rng: np.random.Generator) -> dict[str, Any]:
    """Low-saturation tones only, so that no background can be mistaken for an object color."""
    kind = vocab.BACKGROUNDS[int(rng.integers(len(vocab.BACKGROUNDS)))]

    def tone() -> list[int]:
        v = float(rng.uniform(70, 215))
        tint = rng.uniform(-12, 12, 3)
        return [int(np.clip(v + t, 0, 255)) for t in tint]

    bg: dict[str, Any] = {"kind": kind, "color": tone(), "seed": int(rng.integers(2**31))}
    if kind == "gradient":
        bg["color2"] = tone()
        bg["angle"] = int(rng.integers(0, 360))
    return bg


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    """One element (rng.integers: `Generator.choice` costs ~20 us per call, and scenes make dozens)."""
    return seq[int(rng.integers(len(seq)))]


def _texture(rng: np.random.Generator) -> str:
    u = rng.random()
    return "solid" if u < 0.6 else ("striped" if u < 0.8 else "dotted")


def _attributes(rng: np.random.Generator, n: int, cfg: SceneConfig) -> list[tuple[str, str, str, str]]:
    """Draw (shape, color, size, texture) for n objects from small per-scene pools, so distractors share attributes
    and a unique description usually needs two or more words."""
    all_colors = tuple(vocab.COLORS)
    shapes = [vocab.SHAPES[i] for i in rng.permutation(len(vocab.SHAPES))[: int(rng.integers(2, 5))]]
    colors = [all_colors[i] for i in rng.permutation(len(all_colors))[: int(rng.integers(2, 5))]]
    out: list[tuple[str, str, str, str]] = []
    for color, shape in cfg.required:
        out.append((shape, color, _pick(rng, vocab.SIZES), _texture(rng)))
    while len(out) < n:
        shape = _pick(rng, shapes) if rng.random() < 0.85 else _pick(rng, vocab.SHAPES)
        color = _pick(rng, colors) if rng.random() < 0.85 else _pick(rng, all_colors)
        if (color, shape) in cfg.forbidden:
            continue
        out.append((shape, color, _pick(rng, vocab.SIZES), _texture(rng)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _other_color(rng: np.random.Generator, color: str, shape: str, cfg: SceneConfig) -> str | None:
    choices = [c for c in vocab.COLORS if c != color and (c, shape) not in cfg.forbidden]
    return str(rng.choice(choices)) if choices else None


def _trajectory(rng: np.random.Generator, motion: str, r: float, W: int, H: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Center per frame for one motion pattern. Distances are fractions of the frame, so speed scales with T."""
    t = np.arange(T, dtype=np.float64)
    s = t / max(T - 1, 1)  # 0..1
    lo, hi = r + 1, W - r - 1
    axis_dirs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    d = np.array(axis_dirs[int(rng.integers(4))], np.float64)
    perp = np.array([d[1], d[0]])
    if motion == "static":
        p = np.array([rng.uniform(lo, hi), rng.uniform(lo, H - r - 1)])
        return np.full(T, p[0]), np.full(T, p[1])

    def start_for(dist: float) -> np.ndarray:
        # choose a start such that start + d*dist stays inside; a small perpendicular drift keeps motion natural
        p = np.array([rng.uniform(lo, hi), rng.uniform(lo, H - r - 1)])
        for k in range(2):
            if d[k] > 0:
                p[k] = rng.uniform(lo, max(lo, (hi if k == 0 else H - r - 1) - dist))
            elif d[k] < 0:
                p[k] = rng.uniform(min(hi, lo + dist), (hi if k == 0 else H - r - 1))
        return p

    size = min(W, H)
    drift = perp * rng.uniform(-0.05, 0.05) * size
    if motion in ("linear", "accelerating", "stopping"):
        dist = rng.uniform(0.3, 0.5) * size
        p0 = start_for(dist)
        if motion == "linear":
            f = s
        elif motion == "accelerating":
            f = s**2.2
        else:  # stopping: constant speed until a stop frame around the middle, then still
            stop = rng.uniform(0.4, 0.6)
            f = np.minimum(s / stop, 1.0)
        pos = p0[None] + f[:, None] * (d * dist + drift)[None]
    elif motion == "turning":
        d2 = np.array([d[1], d[0]]) * (1 if rng.random() < 0.5 else -1)
        dist = rng.uniform(0.25, 0.35) * size
        turn = rng.uniform(0.4, 0.6)
        # place the corner so both legs fit
        corner = np.array([rng.uniform(lo + dist, hi - dist), rng.uniform(lo + dist, H - r - 1 - dist)])
        p0 = corner - d * dist
        f1 = np.minimum(s / turn, 1.0)
        f2 = np.clip((s - turn) / (1 - turn), 0, 1)
        pos = p0[None] + f1[:, None] * (d * dist)[None] + f2[:, None] * (d2 * dist)[None]
    elif motion == "bouncing":
        dist = rng.uniform(1.0, 1.5) * (hi - lo)
        p0 = np.array([rng.uniform(lo, hi), rng.uniform(lo, H - r - 1)])
        raw = p0[None] + s[:, None] * (d * dist)[None]
        pos = raw.copy()
        for k, (a, b) in enumerate(((lo, hi), (lo, H - r - 1))):
            span = b - a
            u = np.mod(raw[:, k] - a, 2 * span)
            pos[:, k] = a + np.where(u > span, 2 * span - u, u)
    elif motion in ("entering", "leaving"):
        # move along d from outside the frame to inside (entering) or the reverse (leaving)
        inside = np.array([rng.uniform(lo + 4, hi - 4), rng.uniform(lo + 4, H - r - 5)])
        out_pt = inside.copy()
        k = 0 if d[0] != 0 else 1
        extent = W if k == 0 else H
        if motion == "entering":
            out_pt[k] = -r - 2 if d[k] > 0 else extent + r + 2
            t0, t1 = rng.uniform(0.15, 0.55), None
            t1 = min(1.0, t0 + rng.uniform(0.25, 0.4))
            f = np.clip((s - t0) / (t1 - t0), 0, 1)
            pos = out_pt[None] + f[:, None] * (inside - out_pt)[None]
        else:
            out_pt[k] = extent + r + 2 if d[k] > 0 else -r - 2
            t0 = rng.uniform(0.1, 0.4)
            t1 = min(0.9, t0 + rng.uniform(0.25, 0.4))
            f = np.clip((s - t0) / (t1 - t0), 0, 1)
            pos = inside[None] + f[:, None] * (out_pt - inside)[None]
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return pos[:, 0], pos[:, 1]


def sample_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """Draw one scene: attributes, positions (or trajectories) and z-order. Visibility is checked by the caller
    after rendering (see `generate.make_scene`), which redraws positions when an object is hidden too much."""
    W = H = cfg.resolution
    T = cfg.num_frames
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    n = max(n, len(cfg.required))
    attrs = _attributes(rng, n, cfg)
    z_order = rng.permutation(n)
    objects: list[Obj] = []
    for i, (shape, color, size, texture) in enumerate(attrs):
        r = vocab.radius_for(size, W)
        if T == 1:
            motion = "static"
        else:
            motion = str(rng.choice(vocab.MOTIONS, p=[0.14, 0.18, 0.12, 0.12, 0.14, 0.12, 0.09, 0.09]))
        x, y = _trajectory(rng, motion, r, W, H, T)
        if motion == "static":
            # redraw a static position a few times if it would sit on top of an earlier static object: saves most
            # of the renders that the visibility check would otherwise reject
            for _ in range(8):
                if all(np.hypot(x[0] - p.x[0], y[0] - p.y[0]) > 0.9 * max(r, float(p.r[0]))
                       for p in objects if p.motion == "static"):
                    break
                x, y = _trajectory(rng, motion, r, W, H, T)
        radius = np.full(T, r)
        color_change = size_change = None
        if T > 1 and motion not in ("entering", "leaving") and rng.random() < cfg.color_change_p:
            new = _other_color(rng, color, shape, cfg)
            if new is not None:
                color_change = (int(rng.integers(int(0.3 * T), int(0.7 * T) + 1)), new)
        elif T > 1 and motion == "static" and rng.random() < cfg.size_change_p * 3:
            k = vocab.SIZES.index(size)
            new_k = k + 1 if k == 0 else (k - 1 if k == 2 else k + (1 if rng.random() < 0.5 else -1))
            size_change = vocab.SIZES[new_k]
            r2 = vocab.radius_for(size_change, W)
            a, b = int(0.3 * T), int(0.7 * T)
            radius = r + (r2 - r) * np.clip((np.arange(T) - a) / max(b - a, 1), 0, 1)
        objects.append(Obj(id=i, shape=shape, color=color, size=size, texture=texture, z=int(z_order[i]),
                           x=quantize(x), y=quantize(y), r=quantize(radius), motion=motion, color_change=color_change,
                           size_change=size_change))
    return Scene(width=W, height=H, num_frames=T, background=sample_background(rng), objects=objects)
