"""`PixelLMConfig`: sizes of the Qwen2.5-VL trunk, the segmentation codebook and the light pixel decoder.

Stored as `config.json` with `model_type: pixelwise_pixellm`. The codebook is `seg_token_num` tokens per visual
scale times `image_feature_scale_num` scales (PixelLM's released setting: 3 x 2 = 6 tokens `[SEG0]..[SEG5]`); every
target in an answer is followed by the whole group. `vision_taps` names the ViT blocks whose patch-level outputs
feed the decoder, deepest first (scale 0 = deep, coarse-to-fine as in the paper).

Paper vs release switches (see docs/families.md): `learnable_fusion` (paper: learnable token weights w_i and scale
weights gamma_l; release: fixed 1/n because they are never registered as parameters) and `modulation`
("sigmoid" = paper f * sigma(m), "one_plus_sigmoid" = release f * (1 + sigma(m))).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pixelwise.core.config import JsonConfig
from pixelwise.core.errors import ConfigError
from pixelwise.modules.vlm import DEFAULT_TEXT_SIZES, DEFAULT_VISION_SIZES

MODEL_TYPE = "pixelwise_pixellm"


def seg_token_names(seg_token_num: int, scale_num: int) -> list[str]:
    """`[SEG0]`..`[SEG{n-1}]`, or the single LISA-style `[SEG]` for the degenerate 1 x 1 codebook."""
    n = seg_token_num * scale_num
    return ["[SEG]"] if n == 1 else [f"[SEG{i}]" for i in range(n)]


@dataclass
class PixelLMConfig(JsonConfig):
    text: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_TEXT_SIZES))
    vision: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_VISION_SIZES))
    vocab_size: int = 1088
    seg_token_num: int = 3
    image_feature_scale_num: int = 2
    vision_taps: list[int] = field(default_factory=lambda: [-1, 1])  # deepest first, one per scale
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    decoder_mlp_dim: int = 256
    learnable_fusion: bool = True
    modulation: str = "sigmoid"
    loss_text: float = 1.0
    loss_bce: float = 2.0
    loss_dice: float = 0.5
    loss_refine: float = 1.0
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_seg_tokens(self) -> int:
        return self.seg_token_num * self.image_feature_scale_num

    @property
    def seg_tokens(self) -> list[str]:
        return seg_token_names(self.seg_token_num, self.image_feature_scale_num)

    def validate(self, source: str = "config") -> None:
        if self.model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")
        if self.seg_token_num < 1 or self.image_feature_scale_num < 1:
            raise ConfigError(f"{source}: seg_token_num and image_feature_scale_num must be >= 1")
        if len(self.vision_taps) != self.image_feature_scale_num:
            raise ConfigError(f"{source}: vision_taps has {len(self.vision_taps)} entries for "
                              f"{self.image_feature_scale_num} scales")
        if self.modulation not in ("sigmoid", "one_plus_sigmoid"):
            raise ConfigError(f"{source}: modulation must be 'sigmoid' or 'one_plus_sigmoid', got {self.modulation!r}")
        head_dim = int(self.text["hidden_size"]) // int(self.text["num_attention_heads"])
        if 2 * sum(self.text["mrope_section"]) != head_dim:
            raise ConfigError(f"{source}: mrope_section {self.text['mrope_section']} must sum to head_dim/2 = "
                              f"{head_dim // 2}")
        if self.decoder_dim % self.decoder_heads or self.decoder_dim % 8:
            raise ConfigError(f"{source}: decoder_dim {self.decoder_dim} must be divisible by decoder_heads and 8")
