"""The sight check (`pixelwise.recipes.sight_check`): a small UniPixel from scratch must learn a question only the
image answers (the colour of a square filling the frame) and answer it on held-out images; the text alone is at
chance. If this fails, the visual path (tower, merger, token placement, positions, attention) is broken."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.slow
def test_a_model_from_scratch_learns_what_only_the_image_tells(tmp_path):
    from pixelwise.recipes.sight_check import sight_check

    torch.set_num_threads(1)
    report = sight_check(tmp_path, steps=150, lr=3e-3, fill=True, train_size=256, held_out=60)
    assert report["held_out_accuracy_before"] <= 0.3
    assert report["held_out_accuracy_after"] >= 0.9, report
