"""Same input and seed on the same machine: the same text and masks (a real model family, tiny random weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "conformance" / "unipixel" / "checkpoint"


@pytest.mark.slow
def test_same_input_same_output(tmp_path):
    import torch

    import pixelwise

    if not hasattr(pixelwise, "load") or not CHECKPOINT.is_dir():
        pytest.skip("needs pixelwise.load and the UniPixel conformance checkpoint")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    pipe = pixelwise.load(CHECKPOINT, device="cpu")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        r = pipe.segment(str(tmp_path / "img.png"), "the red object", max_new_tokens=6)
        runs.append(r)
    a, b = runs
    assert a.answer == b.answer and a.frame_indices == b.frame_indices and len(a.objects) == len(b.objects)
    for x, y in zip(a.objects, b.objects):
        assert np.array_equal(x.masks, y.masks)
    assert a.to_json()["objects"] == b.to_json()["objects"]
