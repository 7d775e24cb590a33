"""Shared fixtures: small media files made on the fly, plus hostile ones (corrupt, empty, oversize headers)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_frames(num: int = 12, height: int = 48, width: int = 64) -> np.ndarray:
    """A red square moving right on a gray background: easy to check after lossy encoding."""
    frames = np.full((num, height, width, 3), 90, np.uint8)
    for t in range(num):
        x = 4 + 3 * t
        frames[t, 10:26, x:x + 16] = (220, 30, 30)
    return frames


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims `width` x `height` (a decompression-bomb probe)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    from pixelwise.core.media import save_video

    d = tmp_path_factory.mktemp("media")
    frames = make_frames()
    Image.fromarray(frames[0]).save(d / "image.png")
    Image.fromarray(frames[0]).save(d / "image.jpg", quality=95)
    save_video(d / "clip.mp4", frames, fps=10)
    folder = d / "frames"
    folder.mkdir()
    for t, f in enumerate(frames):  # names whose lexical order differs from numeric order
        Image.fromarray(f).save(folder / f"frame_{t}.png")
    # hostile inputs
    good = (d / "image.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    (d / "huge.png").write_bytes(png_header_only(100_000, 100_000))
    (d / "empty_folder").mkdir()
    return d


def pixelworld_referring_ciou(path, num: int = 30) -> float:
    """cIoU of a checkpoint's `segment` on the first `num` PixelWorld test referring images (shipped-model tests)."""
    import pixelwise
    from pixelwise.core.masks import rle_decode
    from pixelwise.data.pixelworld.generate import GenConfig, generate_in_memory
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene

    pipe = pixelwise.load(path)
    inter = union = 0
    for s in generate_in_memory(GenConfig(split="test", num=num, tasks=("referring",))):
        frames, _, _ = render(Scene.from_json(s["scene"]))
        truth = rle_decode(s["targets"][0]["masks"][0]).astype(bool)
        r = pipe.segment(frames[0], s["question"])
        pred = np.zeros_like(truth)
        for o in r.objects:
            pred |= np.asarray(o.masks[0], bool)
        inter += int((pred & truth).sum())
        union += int((pred | truth).sum())
    assert union > 0, f"no target pixels in {num} PixelWorld samples"
    return inter / union
