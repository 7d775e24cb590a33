"""The native PixelWorld format: `samples.jsonl` (one JSON object per sample) + `media/` + `dataset.json`.

One sample:
    id, index, split, task, media (relative path: .png image or .mp4 clip / frame folder), num_frames, height,
    width, fps, question, answer, expression (grammar dict or null), type_id (0 referring / 1 reasoning),
    targets: [{obj_id, label, masks: [RLE | null per frame], boxes: [[x1, y1, x2, y2] | null per frame]}],
    prompts: [{type: point|box|mask, frame, obj_id, x/y | x1..y2 | rle}], options, correct, qtype,
    target_media (editing), edit (editing op), scene (the full scene graph, see scene.py).
Boxes are pixel coordinates with exclusive x2/y2. Masks are the *visible* parts, COCO RLE (compressed string).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core.errors import FormatError
from pixelwise.core.masks import rle_decode
from pixelwise.core.media import load_media

SAMPLES_FILE = "samples.jsonl"
META_FILE = "dataset.json"


def iter_samples(root: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(root) / SAMPLES_FILE
    if not path.is_file():
        raise FormatError(f"{root}: no {SAMPLES_FILE} (not a PixelWorld folder?)")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise FormatError(f"{path}:{n}: invalid JSON ({e.msg})") from None


def load_samples(root: str | Path) -> list[dict[str, Any]]:
    return list(iter_samples(root))


def load_meta(root: str | Path) -> dict[str, Any]:
    path = Path(root) / META_FILE
    if not path.is_file():
        raise FormatError(f"{root}: no {META_FILE}")
    return json.loads(path.read_text(encoding="utf-8"))


def target_masks(sample: dict[str, Any]) -> np.ndarray:
    """bool [K, T, H, W]: the visible mask of every target on every frame (empty where the RLE is null)."""
    H, W, T = sample["height"], sample["width"], sample["num_frames"]
    out = np.zeros((len(sample["targets"]), T, H, W), bool)
    for k, tgt in enumerate(sample["targets"]):
        for t, rle in enumerate(tgt["masks"]):
            if rle is not None:
                out[k, t] = rle_decode(rle, (H, W), source=f"{sample['id']} target {k} frame {t}")
    return out


def read_media(root: str | Path, rel: str) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of a sample's media (PNG image, MP4 clip or folder of PNG frames)."""

    return load_media(Path(root) / rel).frames
