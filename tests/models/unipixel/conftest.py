"""Fixtures: the public conformance vectors (official implementation, tiny random model) and a tiny own model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

VECTORS = Path(__file__).resolve().parents[2] / "data" / "conformance" / "unipixel"
CHECKPOINT = VECTORS / "checkpoint"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def official_config() -> dict:
    return json.loads((CHECKPOINT / "config.json").read_text())


@pytest.fixture(scope="session")
def processor():
    from pixelwise.models.unipixel import UniPixelProcessor

    return UniPixelProcessor.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="session")
def model():
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    return UniPixelForConditionalGeneration.from_pretrained(CHECKPOINT)


@pytest.fixture()
def tiny_config(official_config):
    """Our own small model: the vectors' architecture, SAM2 described by an explicit flat `sam2_arch`."""
    from pixelwise.models.unipixel import UniPixelConfig
    from pixelwise.modules.sam2 import Sam2Config

    raw = copy.deepcopy(official_config)
    raw["sam2_config"] = None
    raw["sam2_arch"] = Sam2Config.from_unipixel_config(official_config).to_dict()
    return UniPixelConfig.from_dict(raw)
