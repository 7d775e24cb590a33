"""Pixel-SAIL configuration: one transformer's sizes, the patch size, the upsampler and the special-token ids.

Stored as `config.json` (`model_type: pixelwise_pixelsail`) next to `model.safetensors` and `tokenizer.json`.
`upsampler_variant` picks the output stride of the learnable upsampler: "paper" (H/4, arXiv 2504.10465) or "release"
(the released code's k = 1 + log2(P/4) blocks, i.e. stride P/8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelwise.core.config import JsonConfig
from pixelwise.core.errors import ConfigError
from pixelwise.modules.transformer import DecoderConfig
from pixelwise.modules.upsample import blocks_for_stride

MODEL_TYPE = "pixelwise_pixelsail"

# Token strings. The image block reuses Qwen's vision tokens: <|vision_start|> <|image_pad|>*(h*w) <|vision_end|>
# (the paper's <vision> <vpatch> </vision>).
VISION_START, VISION_PATCH, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
SEG_TOKEN = "[SEG]"
NO_PROMPT = "<NO_Prompt>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def prompt_token(k: int) -> str:
    return f"<Prompt{k}>"


def special_tokens(num_prompt_tokens: int) -> list[str]:
    """The tokens Pixel-SAIL adds to a Qwen tokenizer (besides Qwen's own)."""
    return [SEG_TOKEN, *[prompt_token(k) for k in range(num_prompt_tokens)], NO_PROMPT]


@dataclass
class PixelSailConfig(JsonConfig):
    vocab_size: int = 1100
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 352
    rope_theta: float = 10000.0
    patch_size: int = 8
    image_size: int = 128  # long side the image is resized to (rounded up to a multiple of patch_size)
    seg_channels: int = 64  # width of the upsampled features and of the [SEG] projection (512 in the paper)
    upsampler_channels: int = 128
    upsampler_variant: str = "paper"  # "paper": stride 4; "release": stride patch_size/8
    num_prompt_tokens: int = 15
    # vision-expert distillation heads (training only; 0 = not built, as in a shipped checkpoint)
    distill_dim: int = 0  # teacher's coarse feature width (SAM2 image embedding) -> Linear(d, distill_dim)
    distill_fine_dim: int = 0  # teacher's stride-4 feature width -> 1x1 conv on the upsampled features
    token_ids: dict[str, int] = field(default_factory=dict)
    model_type: str = MODEL_TYPE
    name: str = "pixelsail"
    notes: dict[str, Any] = field(default_factory=dict)  # training provenance (teacher, data); not used by the model

    # ------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def output_stride(self) -> int:
        if self.upsampler_variant == "paper":
            return 4
        return max(1, self.patch_size // 8)

    @property
    def upsample_blocks(self) -> int:
        return blocks_for_stride(self.patch_size, self.output_stride)

    def decoder_config(self) -> DecoderConfig:
        quarter = self.head_dim // 4
        return DecoderConfig(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                             num_kv_heads=self.num_kv_heads, intermediate_size=self.intermediate_size,
                             rope_theta=self.rope_theta,
                             # paper: t section of width 0, y and x each d_head/4 (frequency pairs)
                             rope_sections=(self.head_dim // 2 - 2 * quarter, quarter, quarter))

    def token_id(self, token: str) -> int:
        if token not in self.token_ids:
            raise ConfigError(f"{self.name}: config has no id for token {token!r}")
        return self.token_ids[token]

    # ------------------------------------------------------------------ validation / io
    def validate(self, source: str = "config") -> None:
        if self.model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")
        if self.upsampler_variant not in ("paper", "release"):
            raise ConfigError(f"{source}: upsampler_variant must be 'paper' or 'release', got {self.upsampler_variant!r}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads or self.head_dim % 4:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size}, num_heads {self.num_heads}, "
                              f"num_kv_heads {self.num_kv_heads} do not give a head_dim divisible by 4")
        if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
            raise ConfigError(f"{source}: patch_size must be a power of two >= 4, got {self.patch_size}")
        if self.image_size < self.patch_size:
            raise ConfigError(f"{source}: image_size {self.image_size} is smaller than the patch size")
        if not 1 <= self.num_prompt_tokens <= 64:
            raise ConfigError(f"{source}: num_prompt_tokens must be 1..64, got {self.num_prompt_tokens}")
        needed = [VISION_START, VISION_PATCH, VISION_END, IM_START, IM_END, *special_tokens(self.num_prompt_tokens)]
        missing = [t for t in needed if t not in self.token_ids]
        if missing:
            raise ConfigError(f"{source}: token_ids lacks {', '.join(missing)}")
        bad = {t: i for t, i in self.token_ids.items() if not 0 <= int(i) < self.vocab_size}
        if bad:
            raise ConfigError(f"{source}: token ids outside the vocabulary of {self.vocab_size}: {bad}")

    def finish_loading(self, source: str) -> None:
        self.token_ids = {str(k): int(v) for k, v in self.token_ids.items()}  # ints, whatever the JSON or the caller gave
        self.validate(source)
