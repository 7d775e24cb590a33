"""UFO training recipe on PixelWorld: referring / reasoning / multi-target segmentation (`<MASK>` retrieval),
grounding (boxes as text) and detection (parallel grid decoding), mixed in one loop.

    python -m pixelwise.recipes.ufo.train_ufo pixelwise/recipes/ufo/configs/ufo_tiny.yaml \
        --set data=data/pw-train --set out=pixelwise/checkpoints/ufo-tiny

Detection samples are packed: prompt + image, then `grid_train_points` grid sub-sequences (every assigned grid point
first, then random background points), each answering `<box>...</box><MASK>x16` or end-of-turn. Everything is
trained from scratch; loss = CE + focal + dice (1 : 1 : 1, the paper's weights).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pixelwise.models.ufo.configuration_ufo import UFOConfig
from pixelwise.models.ufo.modeling_ufo import UFOForConditionalGeneration, token_ids_of
from pixelwise.models.ufo.processing_ufo import UFO_TOKENS, UFOProcessor
from pixelwise.train import family
from pixelwise.train.config import recipe_cli

TASKS = ("referring", "reasoning", "multi_target", "grounding", "detection")
DEFAULTS: dict[str, Any] = {"recipe": "ufo", "tasks": list(TASKS)}
TEMPLATES = ["You are a helpful assistant.", "system\n", "user\n", "assistant\n", "Please segment the red circle."]


def build(cfg: dict[str, Any]) -> tuple[UFOForConditionalGeneration, UFOProcessor]:
    mcfg = UFOConfig(**cfg["model"]) if cfg["model"] else UFOConfig()
    tok = family.build_tokenizer(cfg["data"], cfg["tasks"], cfg["vocab_size"], UFO_TOKENS, cfg["corpus_samples"],
                                 TEMPLATES)
    mcfg.vocab_size = (tok.get_vocab_size() + 63) // 64 * 64
    proc = UFOProcessor(tok, frame_pixels=cfg["frame_pixels"], patch_size=int(mcfg.vision["patch_size"]),
                        num_mask_tokens=mcfg.num_mask_tokens, box_bins=mcfg.box_bins)
    return UFOForConditionalGeneration(mcfg, token_ids_of(proc)), proc


def encode_item(model: UFOForConditionalGeneration, proc: UFOProcessor, it, rng: np.random.Generator):
    """One PixelWorld item -> (Encoded, target masks [K, H, W] in `<MASK>`-group order)."""
    cfg = model.config
    masks = torch.from_numpy(it.masks[:, 0]) if len(it.masks) else torch.zeros(0, *it.frames.shape[1:3], dtype=torch.bool)
    if it.task == "detection":
        boxes = np.array([t["boxes"][0] for t in it.sample["targets"]], dtype=np.float64).reshape(-1, 4)
        size = (int(it.sample["height"]), int(it.sample["width"]))
        answers, points, owners = proc.grid_answers(boxes, size, cfg.grid_size, cfg.grid_repeat,
                                                    cfg.grid_train_points, rng)
        enc = proc.pack(proc.encode(it.frames, it.question), answers, points, supervise=True)
        keep = [o for o in owners if o >= 0]
        return enc, masks[keep] if keep else masks[:0]
    enc = proc.encode(it.frames, it.question, proc.format_answer(it.answer))
    if it.task == "grounding":  # boxes only: no <MASK> group in the answer
        return enc, masks[:0]
    return enc, masks


def step_loss(model: UFOForConditionalGeneration, proc: UFOProcessor, items: list, rng: np.random.Generator):
    encoded, targets = zip(*(encode_item(model, proc, it, rng) for it in items))
    batch = proc.collate(list(encoded), bidirectional_image=model.config.bidirectional_image)
    out = model(batch, list(encoded), list(targets))
    return out.loss, out.parts


def load(path) -> tuple[UFOForConditionalGeneration, UFOProcessor]:
    proc = UFOProcessor.from_pretrained(path)
    return UFOForConditionalGeneration.from_pretrained(path, proc), proc


run = family.recipe_runner(DEFAULTS, build, step_loss, load)


def main(argv: list[str] | None = None) -> None:
    recipe_cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
