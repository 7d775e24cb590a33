"""Random access to a native PixelWorld folder for training and evaluation loops.

`PixelWorldDataset(root)` follows the map-style dataset protocol (`len`, integer indexing), so it can be handed
to `torch.utils.data.DataLoader` as is, without importing torch here. The JSONL is indexed by byte offset once and
each item is parsed on demand, so a folder of many clips does not sit in memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core.errors import FormatError
from pixelwise.core.masks import rle_decode
from pixelwise.core.prompts import Box, MaskPrompt, Point, VisualPrompt
from pixelwise.core.results import Result, SegObject
from pixelwise.data.pixelworld import native


@dataclass
class PixelWorldItem:
    sample: dict[str, Any]  # the raw JSON record (see native.py)
    frames: np.ndarray | None  # uint8 [T, H, W, 3] (None when the dataset was opened with load_media=False)
    masks: np.ndarray  # bool [K, T, H, W], one stack per target, in [SEG] order
    prompts: list[VisualPrompt] = field(default_factory=list)
    target_frames: np.ndarray | None = None  # editing: the rendered result

    @property
    def question(self) -> str:
        return self.sample["question"]

    @property
    def answer(self) -> str:
        return self.sample["answer"]

    @property
    def task(self) -> str:
        return self.sample["task"]

    def result(self) -> Result:
        """The ground truth as a pixelwise `Result` (what a perfect model returns)."""
        objects = [SegObject(id=k, masks=self.masks[k], label=t["label"])
                   for k, t in enumerate(self.sample["targets"])]
        return Result(answer=self.answer, objects=objects, frame_indices=list(range(self.sample["num_frames"])),
                      size=(self.sample["height"], self.sample["width"]))


def to_prompt(p: dict[str, Any]) -> VisualPrompt:
    if p["type"] == "point":
        return Point(float(p["x"]), float(p["y"]), int(p["frame"]))
    if p["type"] == "box":
        return Box(float(p["x1"]), float(p["y1"]), float(p["x2"]), float(p["y2"]), int(p["frame"]))
    if p["type"] == "mask":
        return MaskPrompt(rle_decode(p["rle"]), int(p["frame"]))
    raise FormatError(f"unknown prompt type {p['type']!r}")


class PixelWorldDataset:
    def __init__(self, root: str | Path, tasks: Sequence[str] | None = None, load_media: bool = True):
        self.root = Path(root)
        self.load_media = load_media
        path = self.root / native.SAMPLES_FILE
        if not path.is_file():
            raise FormatError(f"{root}: no {native.SAMPLES_FILE}, not a PixelWorld folder; make one with "
                              f"`pixelwise pixelworld generate --out {root} --split train --num 8000 --tasks ...` "
                              "(the model card or the config's comments give its exact command)")
        self._path = path
        self._offsets: list[int] = []
        self.tasks: list[str] = []
        with open(path, "rb") as f:
            pos = 0
            for line in f:
                if line.strip():
                    task = json.loads(line)["task"]
                    if tasks is None or task in tasks:
                        self._offsets.append(pos)
                        self.tasks.append(task)
                pos += len(line)

    def __len__(self) -> int:
        return len(self._offsets)

    def record(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        with open(self._path, "rb") as f:
            f.seek(self._offsets[index])
            return json.loads(f.readline())

    def __getitem__(self, index: int) -> PixelWorldItem:
        s = self.record(index)
        frames = native.read_media(self.root, s["media"]) if self.load_media else None
        target = None
        if self.load_media and s.get("target_media"):
            target = native.read_media(self.root, s["target_media"])
        return PixelWorldItem(sample=s, frames=frames, masks=native.target_masks(s),
                              prompts=[to_prompt(p) for p in s.get("prompts") or []], target_frames=target)
