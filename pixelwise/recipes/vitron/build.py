"""Create a fresh (randomly initialised) VITRON: tokenizer + config + model, for training and tests.

The tokenizer is the project's offline byte-level BPE with the Qwen special tokens
(`pixelwise.train.tiny.build_tokenizer`) plus VITRON's tags (`<module>`, `<instruction>`, `[SIG]`, `<region>`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from pixelwise.data.pixelworld.world import PixelWorldRenderer
from pixelwise.models.vitron.configuration_vitron import (
    IM_END,
    IM_START,
    VISION_END,
    VISION_PAD,
    VISION_START,
    VITRON_TOKENS,
    VitronConfig,
)
from pixelwise.models.vitron.modeling_vitron import VitronModel
from pixelwise.models.vitron.processing_vitron import VitronProcessor
from pixelwise.modules.chat_text import ChatText
from pixelwise.train.tiny import build_tokenizer as qwen_bpe
from pixelwise.train.tiny import normal_init


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    from tokenizers import AddedToken


    tok = qwen_bpe(corpus, vocab_size=vocab_size)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in VITRON_TOKENS])
    return tok


def new_vitron(corpus: Iterable[str], seed: int = 0, vocab_size: int = 1024, **sizes: Any
               ) -> tuple[VitronModel, VitronProcessor]:
    sizes.setdefault("signal_norm", True)
    sizes.setdefault("signal_pool", True)
    sizes.setdefault("backend_words", True)
    sizes.setdefault("region_norm", True)
    tok = build_tokenizer(corpus, vocab_size)
    needed = [VISION_START, VISION_PAD, VISION_END, IM_START, IM_END, *VITRON_TOKENS]
    world = f"{PixelWorldRenderer.__module__}:{PixelWorldRenderer.__name__}"  # what it is trained to edit and draw
    cfg = VitronConfig(vocab_size=tok.get_vocab_size(), token_ids={t: tok.token_to_id(t) for t in needed},
                       world=world, **sizes)
    cfg.validate()
    torch.manual_seed(seed)
    model = normal_init(VitronModel(cfg))
    return model, VitronProcessor(ChatText(tok), cfg)
