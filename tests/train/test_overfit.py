"""The UniPixel recipe memorises a handful of PixelWorld conversations (image and clip segmentation, a mask-prompted
region question, a PixelQA question, point- and box-prompted `<|ref|>` localisation): the check every model meant
to learn must pass before its numbers mean anything (`pixelwise/recipes/overfit_unipixel.py`)."""

from __future__ import annotations

import pytest

from pixelwise.recipes.overfit_unipixel import FAMILIES, overfit


@pytest.mark.slow
def test_recipe_memorises_a_handful(tmp_path):
    r = overfit(tmp_path, steps=250, threads=1)
    assert len(r.token_accuracy) == len(FAMILIES)
    assert r.last_lm < 0.02, r.last_lm  # nats per answer token
    assert r.last_mask < 0.2, r.last_mask  # SAM2 focal (x100) + dice (x5) terms, from ~20 at the start
    assert r.answers_exact, r.token_accuracy  # greedy decoding reproduces every answer
    assert len(r.mask_iou) == 4 and r.min_iou() >= 0.95, r.mask_iou  # every <|seg|> mask, every frame
