"""A tiny UniPixel built offline: a byte-level BPE tokenizer with the Qwen special tokens, a small Qwen2.5-VL
configuration, a small SAM 2.1 (`sam2_arch`), random initialisation, and a checkpoint folder that
`UniPixelForConditionalGeneration.from_pretrained` / `UniPixelProcessor.from_pretrained` read like an official one.

Nothing is downloaded: the tokenizer is trained on the texts the model will see (PixelWorld questions and answers plus
the conversation templates), so a PixelWorld sentence is a handful of tokens and the embedding matrix stays small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pixelwise.core.io import atomic_write_text
from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
from pixelwise.modules.sam2 import Sam2Config

# Qwen2.5-VL's special tokens (same strings and relative order as the official tokenizer) + UniPixel's three.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
UNIPIXEL_TOKENS = ["<|ref|>", "<|seg|>", "<|mem|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """Byte-level BPE (any text encodes; no unknown token) + the Qwen/UniPixel special tokens after the BPE ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS + UNIPIXEL_TOKENS])
    return tok


@dataclass
class TinySizes:
    """Every size of the tiny model (defaults = the shipped unipixel-tiny)."""

    llm_hidden: int = 192
    llm_layers: int = 4
    llm_heads: int = 6
    llm_kv_heads: int = 2
    llm_intermediate: int = 512
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])  # sums to head_dim / 2
    vit_hidden: int = 64
    vit_depth: int = 4
    vit_heads: int = 2
    vit_intermediate: int = 128
    vit_fullatt: list[int] = field(default_factory=lambda: [1, 3])
    sam2_image_size: int = 128
    sam2_hidden: int = 64
    sam2_mem_dim: int = 16
    sam2_trunk_embed: int = 16
    sam2_trunk_stages: list[int] = field(default_factory=lambda: [1, 2, 3, 1])
    sam2_global_att: list[int] = field(default_factory=lambda: [4])
    sam2_decoder_mlp: int = 256
    sam2_memory_layers: int = 2
    sam2_memory_ff: int = 128
    sam2_iou_hidden: int = 64
    sam2_dropout: float = 0.1  # memory-attention dropout (official 0.1; 0 makes runs bit-comparable across ranks)
    frame_pixels: int = 112 * 112  # LLM frame budget (min = max): 4 x 4 merged tokens per frame pair at 128 px

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TinySizes:
        return cls(**(d or {}))


def sam2_arch(s: TinySizes) -> dict[str, Any]:
    trunk = s.sam2_trunk_embed
    chans = [trunk * 2**i for i in range(len(s.sam2_trunk_stages))][::-1]
    cfg = Sam2Config(
        image_size=s.sam2_image_size, hidden_dim=s.sam2_hidden, mem_dim=s.sam2_mem_dim,
        trunk_embed_dim=trunk, trunk_num_heads=1, trunk_stages=tuple(s.sam2_trunk_stages),
        trunk_global_att_blocks=tuple(s.sam2_global_att), trunk_window_spec=(8, 4, 14, 7),
        trunk_window_pos_embed_bkg_spatial_size=(7, 7), backbone_channel_list=tuple(chans),
        decoder_mlp_dim=s.sam2_decoder_mlp, iou_head_hidden_dim=s.sam2_iou_hidden,
        memory_attention_layers=s.sam2_memory_layers, memory_attention_ff_dim=s.sam2_memory_ff,
        memory_attention_dropout=s.sam2_dropout,
    )
    return cfg.to_dict()


def tiny_config(tokenizer, sizes: TinySizes | None = None) -> dict[str, Any]:
    """The `config.json` of a tiny UniPixel (official flat 4.53 layout + `sam2_arch`), token ids from `tokenizer`."""
    s = sizes or TinySizes()
    tid = tokenizer.token_to_id
    vocab = tokenizer.get_vocab_size()
    vocab = (vocab + 63) // 64 * 64
    text = {
        "hidden_size": s.llm_hidden, "intermediate_size": s.llm_intermediate, "num_hidden_layers": s.llm_layers,
        "num_attention_heads": s.llm_heads, "num_key_value_heads": s.llm_kv_heads, "hidden_act": "silu",
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "rope_scaling": {"mrope_section": list(s.mrope_section), "rope_type": "default", "type": "default"},
        "vocab_size": vocab, "tie_word_embeddings": True, "attention_dropout": 0.0,
        "bos_token_id": tid("<|endoftext|>"), "eos_token_id": tid("<|im_end|>"),
    }
    return {
        "architectures": ["PixelQwen2_5_VLForConditionalGeneration"],
        "model_type": "pixel_qwen2_5_vl",
        "base_model": "qwen2_5_vl",
        "conv_type": "chatml",
        **text,
        "text_config": {**text, "model_type": "qwen2_5_vl_text"},
        "vision_config": {
            "depth": s.vit_depth, "hidden_size": s.vit_hidden, "hidden_act": "silu",
            "intermediate_size": s.vit_intermediate, "num_heads": s.vit_heads, "in_channels": 3,
            "out_hidden_size": s.llm_hidden, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "tokens_per_second": 2, "window_size": 112, "fullatt_block_indexes": list(s.vit_fullatt),
            "model_type": "qwen2_5_vl",
        },
        "image_token_id": tid("<|image_pad|>"),
        "video_token_id": tid("<|video_pad|>"),
        "vision_start_token_id": tid("<|vision_start|>"),
        "vision_end_token_id": tid("<|vision_end|>"),
        "vision_token_id": tid("<|vision_pad|>"),
        "ref_token_id": tid("<|ref|>"),
        "seg_token_id": tid("<|seg|>"),
        "mem_token_id": tid("<|mem|>"),
        "sam2_config": None,
        "sam2_arch": sam2_arch(s),
        "sam2_image_size": s.sam2_image_size,
        "sam2_hidden_tokens": 2,
        "sam2_enable_decoder": True,
        "sample_objects": 5,
        "torch_dtype": "float32",
        "pixelwise_tiny_sizes": asdict(s),
    }


def init_weights(model: torch.nn.Module, std: float = 0.02) -> None:
    """Qwen-style init for Linear/Embedding (normal 0.02, zero bias); other modules keep their own init."""
    for name, mod in model.named_modules():
        if name.startswith("sam2"):
            continue
        if isinstance(mod, torch.nn.Linear):
            torch.nn.init.normal_(mod.weight, std=std)
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
        elif isinstance(mod, torch.nn.Embedding):
            torch.nn.init.normal_(mod.weight, std=std)


def build_model(config: dict[str, Any], seed: int = 0):
    """A randomly initialised UniPixel from a config dict (float32)."""

    torch.manual_seed(seed)
    model = UniPixelForConditionalGeneration(UniPixelConfig.from_dict(config))
    init_weights(model)
    return model


def write_processor_files(path: str | Path, tokenizer, sizes: TinySizes) -> None:
    """tokenizer.json (+ config/template files the HF ecosystem expects) and the frame-budget preprocessor config."""

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "tokenizer.json", tokenizer.to_str())
    atomic_write_text(path / "chat_template.jinja", CHAT_TEMPLATE)
    added = {t: tokenizer.token_to_id(t) for t in QWEN_SPECIAL_TOKENS + UNIPIXEL_TOKENS}
    atomic_write_text(path / "added_tokens.json", json.dumps(added, indent=2) + "\n")
    tok_cfg = {
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 4096, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "additional_special_tokens": UNIPIXEL_TOKENS, "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False, "split_special_tokens": False,
    }
    atomic_write_text(path / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")
    atomic_write_text(path / "special_tokens_map.json", json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": UNIPIXEL_TOKENS},
        indent=2) + "\n")
    pre = {
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        # pixelwise: the per-frame pixel budget this model was trained with (overrides the official budgets).
        "frame_min_pixels": sizes.frame_pixels, "frame_max_pixels": sizes.frame_pixels,
    }
    atomic_write_text(path / "preprocessor_config.json", json.dumps(pre, indent=2) + "\n")
    gen = {"bos_token_id": tokenizer.token_to_id("<|endoftext|>"),
           "eos_token_id": [tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")],
           "pad_token_id": tokenizer.token_to_id("<|endoftext|>"), "do_sample": False}
    atomic_write_text(path / "generation_config.json", json.dumps(gen, indent=2) + "\n")


def normal_init(model: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Linear and embedding weights ~ N(0, std), biases zero (the usual transformer initialisation from scratch)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                torch.nn.init.zeros_(m.bias)
    return model
