"""Create a fresh (randomly initialised) Pixel-SAIL: tokenizer + config + model, for training and tests.

The tokenizer is the project's offline byte-level BPE with the Qwen special tokens
(`pixelwise.train.tiny.build_tokenizer`, trained on the texts the model will see) plus Pixel-SAIL's own tokens
(`[SEG]`, `<Prompt0..K-1>`, `<NO_Prompt>`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from pixelwise.models.pixelsail.configuration_pixelsail import (
    IM_END,
    IM_START,
    VISION_END,
    VISION_PATCH,
    VISION_START,
    PixelSailConfig,
    special_tokens,
)
from pixelwise.models.pixelsail.modeling_pixelsail import PixelSailModel
from pixelwise.models.pixelsail.processing_pixelsail import PixelSailProcessor
from pixelwise.modules.chat_text import ChatText
from pixelwise.train.tiny import build_tokenizer as qwen_bpe
from pixelwise.train.tiny import normal_init


def build_tokenizer(corpus: Iterable[str], num_prompt_tokens: int = 15, vocab_size: int = 1024):
    from tokenizers import AddedToken


    tok = qwen_bpe(corpus, vocab_size=vocab_size)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens(num_prompt_tokens)])
    return tok


def new_pixelsail(corpus: Iterable[str], seed: int = 0, vocab_size: int = 1024, **sizes: Any
                  ) -> tuple[PixelSailModel, PixelSailProcessor]:
    num_prompts = int(sizes.get("num_prompt_tokens", 15))
    tok = build_tokenizer(corpus, num_prompts, vocab_size)
    needed = [VISION_START, VISION_PATCH, VISION_END, IM_START, IM_END, *special_tokens(num_prompts)]
    cfg = PixelSailConfig(vocab_size=tok.get_vocab_size(), token_ids={t: tok.token_to_id(t) for t in needed}, **sizes)
    cfg.validate()
    torch.manual_seed(seed)
    model = normal_init(PixelSailModel(cfg))
    return model, PixelSailProcessor(ChatText(tok), cfg)
