"""Shared fixtures: small generated PixelWorld folders (module-scoped: generation is the slow part)."""

from __future__ import annotations

import pytest

from pixelwise.data.pixelworld.generate import GenConfig, generate


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pw_images")
    generate(root, GenConfig(split="train", num=42, seed=7), workers=1)
    return root


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pw_videos")
    generate(root, GenConfig(split="val", num=21, seed=7, video=True, num_frames=16), workers=1)
    return root
