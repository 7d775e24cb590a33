"""`UFOConfig`: sizes of the Qwen2.5-VL trunk and UFO's parameter-free task settings.

UFO adds no decoder: masks are retrieved by dot products between `<MASK>` token states and the LLM's own image-token
states. `num_mask_tokens` = N^2 sub-pixel tokens give N x upsampling of the merged token grid (paper default 16 -> 4x).
Boxes are text, `<box>x1,y1,x2,y2</box>` on an integer grid of `box_bins` (PixelWorld's 0-1000 grid; the paper's
xyxy corner order — the release writes cx,cy,w,h). Parallel decoding puts a `grid_size` x `grid_size` grid of local
tokens on the image; each grid point decodes its own answer ("<box>...</box><MASK>x16" or end-of-turn).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from pixelwise.core.config import JsonConfig
from pixelwise.core.errors import ConfigError
from pixelwise.modules.vlm import DEFAULT_TEXT_SIZES, DEFAULT_VISION_SIZES

MODEL_TYPE = "pixelwise_ufo"


@dataclass
class UFOConfig(JsonConfig):
    text: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_TEXT_SIZES))
    vision: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_VISION_SIZES))
    vocab_size: int = 1088
    num_mask_tokens: int = 16
    box_bins: int = 1000
    bidirectional_image: bool = True
    grid_size: int = 4
    grid_reinject: bool = True
    grid_repeat: int = 2  # each ground-truth object may be assigned to this many grid points (paper: 3)
    grid_train_points: int = 8  # grid sub-sequences trained per detection sample (positives first; paper: 40 of 100)
    grid_score_threshold: float = 0.5
    grid_nms_iou: float = 0.5
    grid_max_steps: int = 40
    # pixelwise's tiny models only (0 = off, the paper's trunk): learned row + column embeddings, up to this many
    # merged tokens per side, added to the visual tokens (and so to the grid-point local tokens sampled from them).
    # The trunk's positions are all rotary, so a from-scratch LLM cannot read where a token it attends to lies: the
    # session-11 model wrote every box at the same place (x1 = 398 in most answers; docs/models/ufo-tiny.md)
    vision_abs_pos: int = 0
    loss_text: float = 1.0
    loss_focal: float = 1.0
    loss_dice: float = 1.0
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        self.validate()

    @property
    def upsample(self) -> int:
        return math.isqrt(self.num_mask_tokens)

    def validate(self, source: str = "config") -> None:
        if self.model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")
        if self.num_mask_tokens < 1 or math.isqrt(self.num_mask_tokens) ** 2 != self.num_mask_tokens:
            raise ConfigError(f"{source}: num_mask_tokens must be a square (N^2 for N x upsampling), "
                              f"got {self.num_mask_tokens}")
        if self.box_bins < 1 or self.grid_size < 1 or self.grid_repeat < 1 or self.grid_train_points < 1:
            raise ConfigError(f"{source}: box_bins, grid_size, grid_repeat and grid_train_points must be >= 1")
        if self.vision_abs_pos < 0:
            raise ConfigError(f"{source}: vision_abs_pos must be >= 0 (0 = off), got {self.vision_abs_pos}")
        head_dim = int(self.text["hidden_size"]) // int(self.text["num_attention_heads"])
        if 2 * sum(self.text["mrope_section"]) != head_dim:
            raise ConfigError(f"{source}: mrope_section {self.text['mrope_section']} must sum to head_dim/2 = "
                              f"{head_dim // 2}")
