"""A tiny PixelLM (random weights) and its processor, built in well under a second."""

from __future__ import annotations

import pytest
import torch
from tokenizers import AddedToken

from pixelwise.models.pixellm import PixelLMConfig, PixelLMForSegmentation, PixelLMProcessor

CORPUS = ["Please segment the red circle.", "It is a small red circle [SEG].",
          "There are 2 green objects: a green star [SEG] and a green square [SEG].",
          "There is no purple star in the image.", "Segment all red objects."]


def tiny_config(**over) -> PixelLMConfig:
    base: dict = {
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 1, "mrope_section": [2, 3, 3]},
        "vision": {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "patch_size": 8,
                "window_size": 64, "fullatt_block_indexes": [1]},
        "vision_taps": [-1, 0], "decoder_dim": 16, "decoder_heads": 2, "decoder_mlp_dim": 32, "decoder_depth": 1}
    base.update(over)
    return PixelLMConfig(**base)


@pytest.fixture(scope="session")
def tokenizer():
    from pixelwise.train.tiny import build_tokenizer

    tok = build_tokenizer(CORPUS * 4, vocab_size=300)
    tok.add_special_tokens([AddedToken(f"[SEG{i}]", special=True, normalized=False) for i in range(6)])
    return tok


@pytest.fixture()
def model_and_processor(tokenizer):
    torch.manual_seed(0)
    cfg = tiny_config(vocab_size=(tokenizer.get_vocab_size() + 63) // 64 * 64)
    proc = PixelLMProcessor(tokenizer, frame_pixels=64 * 64, patch_size=8)
    model = PixelLMForSegmentation(cfg, proc.seg_token_ids)
    model.set_token_ids(proc.video_id)
    return model, proc
