"""Every input limit is configurable (argument and environment variable) and enforced before the work it guards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save

from pixelwise.core.checkpoint import load_safetensors
from pixelwise.core.errors import CheckpointError, MediaTooLargeError
from pixelwise.core.media import MediaLimits, load_media, save_video

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "pixelwise", *args], capture_output=True, text=True, env=full,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 40, 3), dtype=np.uint8)
    Image.fromarray(frames[0]).save(d / "img.png")
    save_video(d / "clip.mp4", frames, fps=5)
    folder = d / "frames"
    folder.mkdir()
    for t in range(4):
        Image.fromarray(frames[t]).save(folder / f"{t}.png")
    return d


@pytest.mark.parametrize("field, value, target, words", [
    ("max_pixels", 32 * 40 - 1, "img.png", "exceeds the limit of 1279 pixels per frame"),
    ("max_pixels", 32 * 40 - 1, "clip.mp4", "exceeds the limit of 1279 pixels per frame"),
    ("max_frames", 5, "clip.mp4", "6 frames exceed the limit of 5"),
    ("max_frames", 3, "frames", "4 frames exceed the limit of 3"),
    ("max_bytes", 100, "img.png", "exceeds the limit of 100 bytes"),
])
def test_media_limits_as_arguments(media, field, value, target, words):
    with pytest.raises(MediaTooLargeError, match=words):
        load_media(media / target, limits=MediaLimits(**{field: value}))
    load_media(media / target, limits=MediaLimits(**{field: value + 10_000}))  # just above: loads


@pytest.mark.parametrize("env, target, words", [
    ({"PIXELWISE_MAX_PIXELS": "1000"}, "img.png", "exceeds the limit of 1000 pixels per frame"),
    ({"PIXELWISE_MAX_FRAMES": "5"}, "clip.mp4", "exceed the limit of 5"),
    ({"PIXELWISE_MAX_BYTES": "50"}, "clip.mp4", "exceeds the limit of 50 bytes"),
])
def test_media_limits_from_environment_on_the_cli(media, env, target, words):
    r = _cli(["info", str(media / target)], **env)
    assert r.returncode == 2 and words in r.stderr and str(media / target) in r.stderr
    assert _cli(["info", str(media / target)]).returncode == 0


def test_checkpoint_byte_limit(tmp_path):
    import torch

    f = tmp_path / "w.safetensors"
    f.write_bytes(save({"w": torch.zeros(64)}))
    with pytest.raises(CheckpointError, match="exceeds the checkpoint limit of 100 bytes"):
        load_safetensors(f, max_bytes=100)
    r = _cli(["robustness", "check-checkpoint", str(f)], PIXELWISE_MAX_CHECKPOINT_BYTES="100")
    assert r.returncode == 2 and "exceeds the checkpoint limit of 100 bytes" in r.stderr
    assert _cli(["robustness", "check-checkpoint", str(f)]).returncode == 0
