"""PixelWorld vocabulary: the closed sets of attribute values every scene, expression and answer is built from.

Kept in one place so the renderer, the grammar, the dataset card and the tests agree on the exact words.
Colors are saturated and backgrounds are low-saturation, so "what color is it" always has one clear answer.
"""

from __future__ import annotations

import math

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "heart", "pentagon")

# Corners (polygon vertices a person would count); used by "the shape with the most corners".
CORNERS: dict[str, int] = {
    "circle": 0, "ring": 0, "heart": 2, "triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6, "star": 10, "cross": 12,
}

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 160, 60),
    "blue": (37, 78, 220),
    "yellow": (242, 206, 30),
    "purple": (136, 56, 196),
    "orange": (245, 130, 20),
    "cyan": (30, 196, 214),
    "pink": (246, 120, 186),
    "brown": (125, 72, 30),
}

SIZES: tuple[str, ...] = ("small", "medium", "large")
# Circumradius in pixels at 128 px resolution; scaled with the resolution. Ratios of 1.5 keep sizes distinct.
SIZE_RADIUS_128: dict[str, float] = {"small": 7.0, "medium": 10.5, "large": 15.5}

TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise", "clutter")

RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
RELATION_WORDS: dict[str, str] = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below"}

MOTIONS: tuple[str, ...] = ("static", "linear", "bouncing", "accelerating", "stopping", "turning", "entering", "leaving")


def radius_for(size: str, resolution: int) -> float:
    return SIZE_RADIUS_128[size] * resolution / 128.0


def _regular(n: int, r: float, start_deg: float) -> np.ndarray:
    a = np.deg2rad(start_deg) + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _star() -> np.ndarray:
    a = np.deg2rad(-90) + np.pi * np.arange(10) / 5
    r = np.where(np.arange(10) % 2 == 0, 1.08, 0.45)
    return np.stack([r * np.cos(a), r * np.sin(a) + 0.08], 1)


def _cross() -> np.ndarray:
    w, e = 0.34, 0.95
    return np.array([(-w, -e), (w, -e), (w, -w), (e, -w), (e, w), (w, w), (w, e), (-w, e), (-w, w), (-e, w), (-e, -w),
                     (-w, -w)], dtype=np.float64)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1) / 16.0
    return pts * 1.02


# Unit outlines (x right, y down, circumradius ~1). A ring is the circle outline with a hole of HOLE_RATIO.
OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(40, 1.0, 0),
    "ring": _regular(40, 1.0, 0),
    "square": np.array([(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]),
    "triangle": _regular(3, 1.12, -90) + np.array([0.0, 0.18]),
    "star": _star(),
    "cross": _cross(),
    "hexagon": _regular(6, 1.0, 0),
    "heart": _heart(),
    "pentagon": _regular(5, 1.02, -90) + np.array([0.0, 0.08]),
}
RING_HOLE_RATIO = 0.55
