"""A tiny UFO (random weights) and its processor."""

from __future__ import annotations

import pytest
import torch
from tokenizers import AddedToken

from pixelwise.models.ufo import UFOConfig, UFOForConditionalGeneration, UFOProcessor, token_ids_of
from pixelwise.models.ufo.processing_ufo import UFO_TOKENS

CORPUS = ["Please segment the red circle.", "It is a small red circle [SEG].", "Detect every star.",
          "A small yellow star <box>461,703,586,820</box>.", "There is no purple star in the image."]


def tiny_config(**over) -> UFOConfig:
    base: dict = {
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 1, "mrope_section": [2, 3, 3]},
        "vision": {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "patch_size": 8,
                "window_size": 64, "fullatt_block_indexes": [1]},
        "grid_size": 3, "grid_max_steps": 24}
    base.update(over)
    return UFOConfig(**base)


@pytest.fixture(scope="session")
def tokenizer():
    from pixelwise.train.tiny import build_tokenizer

    tok = build_tokenizer(CORPUS * 4, vocab_size=300)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in UFO_TOKENS])
    return tok


@pytest.fixture()
def model_and_processor(tokenizer):
    torch.manual_seed(0)
    cfg = tiny_config(vocab_size=(tokenizer.get_vocab_size() + 63) // 64 * 64)
    proc = UFOProcessor(tokenizer, frame_pixels=64 * 64, patch_size=8)
    return UFOForConditionalGeneration(cfg, token_ids_of(proc)), proc
