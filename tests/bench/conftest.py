"""The conformance checkpoint (tiny random weights, official layout) as a pipeline, one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "conformance" / "unipixel" / "checkpoint"


@pytest.fixture(scope="module")
def pipe():
    import pixelwise

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    p = pixelwise.load(CHECKPOINT, device="cpu")
    yield p
    p.reference = False
    torch.set_num_threads(old)
