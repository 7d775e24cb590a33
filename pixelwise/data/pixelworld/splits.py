"""Splits: what each split's scenes look like and how every sample's seed is derived.

A sample's random stream depends only on (seed, split, index), never on the number of workers or on which other
samples were generated, so any sample can be regenerated alone and a split is byte-identical across runs.

Compositional hold-out: the (color, shape) combinations in `HOLDOUT_COMBOS` never appear in any object of
train/val/test scenes, and spatial relations to an anchor of a shape in `HOLDOUT_RELATIONS` (e.g. "... above the
star") are never generated there. The `holdout` split puts at least one held-out combination in every scene and
prefers it (and held-out relation pairs) as the target.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pixelwise.core.errors import ConfigError
from pixelwise.data.pixelworld.scene import SceneConfig

SPLITS: tuple[str, ...] = ("train", "val", "test", "holdout", "long")
_SPLIT_IDS = {name: i + 1 for i, name in enumerate(SPLITS)}

HOLDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset({
    ("red", "heart"), ("green", "star"), ("blue", "triangle"), ("yellow", "hexagon"),
    ("purple", "circle"), ("orange", "cross"), ("cyan", "square"), ("pink", "ring"),
})
# (relation, shape of the anchor object)
HOLDOUT_RELATIONS: frozenset[tuple[str, str]] = frozenset({
    ("left_of", "hexagon"), ("above", "star"), ("below", "circle"), ("right_of", "triangle"),
})

DEFAULT_FRAMES = 32
LONG_FRAMES = 320


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def sample_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _SPLIT_IDS[check_split(split)], int(index)])


def scene_config(split: str, video: bool, resolution: int = 128, num_frames: int | None = None) -> SceneConfig:
    check_split(split)
    if split == "long":
        video = True
    frames = 1
    if video:
        frames = num_frames or (LONG_FRAMES if split == "long" else DEFAULT_FRAMES)
    cfg = SceneConfig(resolution=resolution, num_frames=frames, forbidden=HOLDOUT_COMBOS)
    if video:
        cfg = replace(cfg, min_objects=3, max_objects=6)
    if split == "long":
        cfg = replace(cfg, min_objects=3, max_objects=5)
    if split == "holdout":
        cfg = replace(cfg, forbidden=frozenset())
    return cfg


def holdout_required(split: str, rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    """The held-out (color, shape) combination a holdout scene must contain (none for other splits)."""
    if split != "holdout":
        return ()
    combos = sorted(HOLDOUT_COMBOS)
    return (combos[int(rng.integers(len(combos)))],)


def relation_allowed(split: str, rel: str, anchor_shape: str) -> bool:
    return split == "holdout" or (rel, anchor_shape) not in HOLDOUT_RELATIONS
