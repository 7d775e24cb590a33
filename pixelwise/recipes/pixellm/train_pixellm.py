"""PixelLM training recipe on PixelWorld (referring, reasoning and MUSE-style multi-target questions).

    python -m pixelwise.recipes.pixellm.train_pixellm pixelwise/recipes/pixellm/configs/pixellm_tiny.yaml \
        --set data=data/pw-train --set out=pixelwise/checkpoints/pixellm-tiny

One training sample = one question; its answer carries one codebook group per target (zero for "There is no ..."),
and the masks are the targets in answer order. Single stage, all parameters trained from scratch (the tiny model has
no pretrained trunk to freeze); loss = 1.0 CE + 2.0 BCE + 0.5 Dice + refinement (PixelLM's weights).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pixelwise.models.pixellm.configuration_pixellm import PixelLMConfig, seg_token_names
from pixelwise.models.pixellm.modeling_pixellm import PixelLMForSegmentation
from pixelwise.models.pixellm.processing_pixellm import PixelLMProcessor
from pixelwise.train import family
from pixelwise.train.config import recipe_cli

TASKS = ("referring", "reasoning", "multi_target")
DEFAULTS: dict[str, Any] = {"recipe": "pixellm", "tasks": list(TASKS)}
TEMPLATES = ["You are a helpful assistant.", "system\n", "user\n", "assistant\n", "Please segment the red circle."]


def build(cfg: dict[str, Any]) -> tuple[PixelLMForSegmentation, PixelLMProcessor]:
    mcfg = PixelLMConfig(**cfg["model"]) if cfg["model"] else PixelLMConfig()
    tokens = seg_token_names(mcfg.seg_token_num, mcfg.image_feature_scale_num)
    tok = family.build_tokenizer(cfg["data"], cfg["tasks"], cfg["vocab_size"], tokens, cfg["corpus_samples"],
                                 TEMPLATES)
    mcfg.vocab_size = (tok.get_vocab_size() + 63) // 64 * 64
    proc = PixelLMProcessor(tok, frame_pixels=cfg["frame_pixels"], patch_size=int(mcfg.vision["patch_size"]),
                            seg_token_num=mcfg.seg_token_num, image_feature_scale_num=mcfg.image_feature_scale_num)
    model = PixelLMForSegmentation(mcfg, proc.seg_token_ids)
    model.set_token_ids(proc.video_id)
    return model, proc


def step_loss(model: PixelLMForSegmentation, proc: PixelLMProcessor, items: list, rng: np.random.Generator):
    encoded, targets = [], []
    for it in items:
        encoded.append(proc.encode(it.frames, it.question, proc.format_answer(it.answer)))
        targets.append(torch.from_numpy(it.masks[:, 0]))  # [K, H, W], first (only) frame
    out = model(proc.collate(encoded), targets)
    return out.loss, out.parts


def load(path) -> tuple[PixelLMForSegmentation, PixelLMProcessor]:
    proc = PixelLMProcessor.from_pretrained(path)
    return PixelLMForSegmentation.from_pretrained(path, proc), proc


run = family.recipe_runner(DEFAULTS, build, step_loss, load)


def main(argv: list[str] | None = None) -> None:
    recipe_cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
