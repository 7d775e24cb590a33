"""Fixtures for the SAM2 module tests: the UniPixel conformance vectors and the SAM2 part of their checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = (REPO / "tests" / "data" / "conformance" / "unipixel", REPO.parent / "shared" / "conformance" / "unipixel")


@pytest.fixture(autouse=True)
def _one_thread():
    """Comparisons of two computation orders (batched vs per-frame encoding) at 1e-5 assume one intra-op thread:
    with two, the kernels' blocking changes the rounding (object scores differ by ~1e-4)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def find_conformance_dir() -> Path | None:
    """The repo copy of the conformance folder first, then the shared one next to the checkout."""
    for d in _CANDIDATES:
        if (d / "cases.json").is_file() and (d / "checkpoint" / "model.safetensors").is_file():
            return d
    return None


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    d = find_conformance_dir()
    if d is None:
        pytest.skip("UniPixel conformance vectors not found (tests/data/conformance/unipixel or ../shared)")
    return d


@pytest.fixture(scope="session")
def unipixel_config(conformance_dir: Path) -> dict:
    return json.loads((conformance_dir / "checkpoint" / "config.json").read_text())


@pytest.fixture(scope="session")
def sam2_state_dict(conformance_dir: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's `sam2.*` tensors with the prefix stripped (official naming)."""
    with safe_open(str(conformance_dir / "checkpoint" / "model.safetensors"), "pt") as f:
        return {k[len("sam2."):]: f.get_tensor(k) for k in f.keys() if k.startswith("sam2.")}  # noqa: SIM118


@pytest.fixture(scope="session")
def sam2_model(unipixel_config: dict, sam2_state_dict: dict[str, torch.Tensor]):
    from pixelwise.modules.sam2 import Sam2Config, Sam2Model

    model = Sam2Model(Sam2Config.from_unipixel_config(unipixel_config)).eval()
    model.load_official_state_dict(sam2_state_dict)
    return model
