"""Visual prompts: a point, a box or a mask, each drawn on one frame of the media.

Coordinates are in pixels of the *original* media (x to the right, y down); `frame` indexes the frame list the
prompt was drawn on (0 for an image). Processors convert them to whatever their model needs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from pixelwise.core.errors import PromptError
from pixelwise.core.masks import rle_decode


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    frame: int = 0
    positive: bool = True

    def validate(self, height: int, width: int, num_frames: int = 1) -> None:
        _check_frame(self.frame, num_frames, self)
        _check_numbers((self.x, self.y), self)
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise PromptError(f"point {self.x},{self.y} is not a finite coordinate")
        if not (0 <= self.x < width and 0 <= self.y < height):
            raise PromptError(
                f"point ({self.x:g}, {self.y:g}) lies outside the {width}x{height} frame"
            )


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    frame: int = 0

    def validate(self, height: int, width: int, num_frames: int = 1) -> None:
        _check_frame(self.frame, num_frames, self)
        coords = (self.x1, self.y1, self.x2, self.y2)
        _check_numbers(coords, self)
        if not all(math.isfinite(c) for c in coords):
            raise PromptError(f"box {coords} has a non-finite coordinate")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise PromptError(f"box {coords} is empty: need x1 < x2 and y1 < y2")
        if self.x1 < 0 or self.y1 < 0 or self.x2 > width or self.y2 > height:
            raise PromptError(f"box {coords} reaches outside the {width}x{height} frame")

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    mask: np.ndarray = field(repr=False)  # bool [H, W] at the media's original resolution
    frame: int = 0

    def validate(self, height: int, width: int, num_frames: int = 1) -> None:
        _check_frame(self.frame, num_frames, self)
        if not isinstance(self.mask, np.ndarray):
            raise PromptError(f"mask prompt must be a numpy array, got {type(self.mask).__name__}")
        if self.mask.ndim != 2 or self.mask.shape != (height, width):
            raise PromptError(
                f"mask prompt of shape {tuple(self.mask.shape)} does not match the {width}x{height} frame"
            )
        if not self.mask.any():
            raise PromptError(f"mask prompt on frame {self.frame} is empty")


VisualPrompt = Union[Point, Box, MaskPrompt]


def _check_numbers(values: tuple, prompt: object) -> None:
    """Coordinates must be real numbers (a bool, None or a string from a JSON request is refused, not crashed on)."""
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise PromptError(f"{type(prompt).__name__} coordinate {v!r} is not a number")


def _check_frame(frame: int, num_frames: int, prompt: object) -> None:
    if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)) or frame < 0 or frame >= num_frames:
        raise PromptError(f"{type(prompt).__name__} is on frame {frame!r}, but there are only {num_frames} frame(s) "
                          f"(0-{num_frames - 1})")


_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def _split_frame(text: str, what: str) -> tuple[str, int]:
    body, _, frame = text.strip().partition("@")
    if not frame:
        return body, 0
    if not re.fullmatch(r"\d+", frame.strip()):
        raise PromptError(f"{what} '{text}': frame after '@' must be a non-negative integer")
    return body, int(frame)


def _numbers(body: str, count: int, what: str, text: str) -> list[float]:
    parts = [p.strip() for p in body.split(",")]
    if len(parts) != count or not all(re.fullmatch(_NUM, p) for p in parts):
        raise PromptError(f"{what} '{text}' must be {count} comma-separated numbers")
    return [float(p) for p in parts]


def parse_point(text: str) -> Point:
    """Parse `X,Y` or `X,Y@FRAME` (CLI syntax)."""
    body, frame = _split_frame(text, "point")
    x, y = _numbers(body, 2, "point", text)
    return Point(x, y, frame)


def parse_box(text: str) -> Box:
    """Parse `X1,Y1,X2,Y2` or `X1,Y1,X2,Y2@FRAME` (CLI syntax)."""
    body, frame = _split_frame(text, "box")
    x1, y1, x2, y2 = _numbers(body, 4, "box", text)
    return Box(x1, y1, x2, y2, frame)


def prompt_from_json(data: object, source: str = "prompt") -> VisualPrompt:
    """A prompt in the HTTP API's JSON form -> Point | Box | MaskPrompt (not yet checked against a frame size):
    `{"type": "point", "point": [x, y], "frame": 0, "positive": true}`, `{"type": "box", "box": [x1, y1, x2, y2],
    "frame": 0}` or `{"type": "mask", "rle": {"size": [H, W], "counts": ...}, "frame": 0}`."""
    if not isinstance(data, dict) or data.get("type") not in ("point", "box", "mask"):
        raise PromptError(f"{source}: must be an object with type 'point', 'box' or 'mask'")
    frame = data.get("frame", 0)
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise PromptError(f"{source}: 'frame' must be a non-negative integer, got {frame!r}")
    kind = data["type"]
    if kind == "mask":
        return MaskPrompt(rle_decode(data.get("rle"), source=f"{source}.rle"), frame)
    key, n = ("point", 2) if kind == "point" else ("box", 4)
    values = data.get(key)
    if not isinstance(values, list) or len(values) != n:
        raise PromptError(f"{source}: '{key}' must be a list of {n} numbers")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise PromptError(f"{source}: '{key}' must be a list of {n} numbers, got {values!r}")
    if kind == "point":
        positive = data.get("positive", True)
        if not isinstance(positive, bool):
            raise PromptError(f"{source}: 'positive' must be true or false")
        return Point(float(values[0]), float(values[1]), frame, positive)
    return Box(*(float(v) for v in values), frame=frame)
