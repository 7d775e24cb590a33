"""VITRON configuration: front-end vision encoder, LLM router, signal embedding and segmentation back-end sizes.

Stored as `config.json` (`model_type: pixelwise_vitron`) with `model.safetensors` and `tokenizer.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelwise.core.config import JsonConfig
from pixelwise.core.errors import ConfigError
from pixelwise.modules.transformer import DecoderConfig
from pixelwise.modules.upsample import blocks_for_stride

MODEL_TYPE = "pixelwise_vitron"

VISION_START, VISION_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
REGION_TOKEN = "<region>"  # replaced by the region (sketch) encoder's embedding
SIGNAL_TOKEN = "[SIG]"  # its hidden state is the continuous half of the hybrid message
MODULE_OPEN, MODULE_CLOSE = "<module>", "</module>"
INSTR_OPEN, INSTR_CLOSE = "<instruction>", "</instruction>"
VITRON_TOKENS = [REGION_TOKEN, SIGNAL_TOKEN, MODULE_OPEN, MODULE_CLOSE, INSTR_OPEN, INSTR_CLOSE]

# Back-end modules the router can invoke (the paper's module letters A-G collapse to these for PixelWorld media).
MODULES = ("segmentation", "editing", "generation")
EDIT_OPS = ("remove", "recolor", "move", "add")
TASKS = ("segment", "remove", "recolor", "move")  # ops that carry a [SIG] embedding (a target to segment)


@dataclass
class VitronConfig(JsonConfig):
    vocab_size: int = 1100
    # front-end vision encoder (bidirectional blocks over raw patches; its own width)
    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    patch_size: int = 8
    image_size: int = 128
    llm_pool: int = 2  # k x k average pooling of the patch grid before the LLM projector (token budget)
    # LLM router
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 352
    rope_theta: float = 10000.0
    # hybrid message: the [SIG] state -> v = [v_p ; v_s] (task-specific ; task-invariant)
    signal_dim: int = 64
    # v batch-normalised (no affine; running statistics at inference) before the segmentation query (new models: True;
    # absent from the configs of models trained before it = False). Without it v grew (|W_s| 39) until every
    # first-layer unit of the query MLP was negative for every input, and the query became its last bias; with a
    # LayerNorm instead, v's part common to every expression (95 % of it) still made one query for all (cosine
    # 0.98-1.00): centring over the batch leaves only what differs (session 10, docs/models/vitron-tiny.md)
    signal_norm: bool = False
    # v from the mean of the answer's states up to and including [SIG] (new models: True; False = the [SIG] state
    # alone, as the paper). The [SIG] state is trained by the LM loss to predict the same next token for every command
    # and came out nearly the same for every expression (cosine 0.98-1.00 between queries, session 10); the states of
    # the command's own words carry the words
    signal_pool: bool = False
    # the segmentation back-end reads the instruction's target words with its own word embeddings (mean over the
    # words, added to the query; new models: True), as the paper's segmentation specialist reads the text
    # instruction of the hybrid message with its own text encoder. The signal alone carried the target's colour
    # poorly (a linear probe: 0.37, majority 0.19) and the masks never left "every object" (session 10)
    backend_words: bool = False
    # the region (sketch) embedding passes an RMSNorm (gain 1: the scale of a word embedding) before it replaces
    # `<region>` (new models: True). Without it, 8,000 steps made every region one vector (norm 573, cosine 0.99
    # between prompts): the LLM's own pre-norm then shrank what differs between regions to 1 %, and every region
    # question got one answer (session 11, docs/models/vitron-tiny.md)
    region_norm: bool = False
    # segmentation back-end
    seg_channels: int = 64
    upsampler_channels: int = 64
    output_stride: int = 4
    # the segmentation back-end's own light pixel encoder (conv stem at stride 4 on the raw frame; 0 = none), as the
    # paper's segmentation specialist (SEEM) has its own image encoder
    pixel_stem_channels: int = 32
    # cross-task synergy discriminator on v_s (training only; 0 = not built)
    synergy_hidden: int = 0
    token_ids: dict[str, int] = field(default_factory=dict)
    # the world the editing/generation back-ends draw in, "pixelwise.<module>:<Class>" ("" = none: pixel edits only)
    world: str = ""
    model_type: str = MODEL_TYPE
    name: str = "vitron"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def upsample_blocks(self) -> int:
        return blocks_for_stride(self.patch_size, self.output_stride)

    def llm_config(self) -> DecoderConfig:
        half = self.head_dim // 2
        q = half // 2
        return DecoderConfig(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                             num_kv_heads=self.num_kv_heads, intermediate_size=self.intermediate_size,
                             rope_theta=self.rope_theta, rope_sections=(half - 2 * q, q, q))

    def vision_config(self) -> DecoderConfig:
        hd = self.vision_hidden // self.vision_heads
        q = hd // 4
        return DecoderConfig(hidden_size=self.vision_hidden, num_layers=self.vision_layers,
                             num_heads=self.vision_heads, num_kv_heads=self.vision_heads,
                             intermediate_size=self.vision_hidden * 3, rope_sections=(hd // 2 - 2 * q, q, q))

    def validate(self, source: str = "config") -> None:
        if self.model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")
        try:
            self.llm_config().validate()
            self.vision_config().validate()
            _ = self.upsample_blocks
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
        if (self.image_size // self.patch_size) % self.llm_pool:
            raise ConfigError(f"{source}: the {self.image_size // self.patch_size}-patch grid does not divide by "
                              f"llm_pool {self.llm_pool}")
        if not isinstance(self.world, str):
            raise ConfigError(f"{source}: 'world' must be a string \"pixelwise.<module>:<Class>\", got {self.world!r}")
        needed = [VISION_START, VISION_PAD, VISION_END, IM_START, IM_END, *VITRON_TOKENS]
        missing = [t for t in needed if t not in self.token_ids]
        if missing:
            raise ConfigError(f"{source}: token_ids lacks {', '.join(missing)}")
        bad = {t: i for t, i in self.token_ids.items() if not 0 <= int(i) < self.vocab_size}
        if bad:
            raise ConfigError(f"{source}: token ids outside the vocabulary of {self.vocab_size}: {bad}")

    def finish_loading(self, source: str) -> None:
        self.token_ids = {str(k): int(v) for k, v in self.token_ids.items()}  # ints, whatever the JSON or the caller gave
        self.validate(source)
