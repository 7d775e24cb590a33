"""Fixed demo scenes used for `examples/` and the README: an image and a clip whose red circle moves left.

Built by hand (not sampled) so the README can describe them in words that never go stale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pixelwise.core import viz
from pixelwise.core.io import atomic_write_text
from pixelwise.core.masks import rle_encode_many
from pixelwise.data.pixelworld import native, tasks, vocab
from pixelwise.data.pixelworld.generate import GenConfig, _write_mp4, generate, write_image
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Obj, Scene, quantize
from pixelwise.data.pixelworld.show import render_sample, render_strip


def _static(i: int, shape: str, color: str, size: str, x: float, y: float, T: int, texture: str = "solid") -> Obj:
    r = vocab.radius_for(size, 128)
    return Obj(i, shape, color, size, texture, i, quantize(np.full(T, x)), quantize(np.full(T, y)), quantize(np.full(T, r)))


def demo_image_scene() -> Scene:
    objs = [
        _static(0, "circle", "red", "medium", 34, 38, 1),
        _static(1, "square", "blue", "large", 88, 40, 1, "striped"),
        _static(2, "star", "yellow", "medium", 40, 94, 1),
        _static(3, "triangle", "green", "small", 64, 70, 1),
        _static(4, "heart", "pink", "medium", 96, 96, 1, "dotted"),
        _static(5, "circle", "blue", "small", 108, 72, 1),
    ]
    return Scene(128, 128, 1, {"kind": "gradient", "color": [196, 196, 188], "color2": [150, 154, 160], "angle": 35,
                               "seed": 1}, objs)


def demo_clip_scene(num_frames: int = 24) -> Scene:
    """A red circle moving from right to left, a blue square moving down, a static yellow star and green ring."""
    T = num_frames
    s = np.arange(T) / (T - 1)
    circle = _static(0, "circle", "red", "medium", 0, 0, T)
    circle.x, circle.y, circle.motion = quantize(104 - 78 * s), quantize(np.full(T, 52.0)), "linear"
    square = _static(1, "square", "blue", "medium", 0, 0, T, "striped")
    square.x, square.y, square.motion = quantize(np.full(T, 40.0)), quantize(20 + 40 * s), "linear"
    star = _static(2, "star", "yellow", "large", 92, 98, T)
    ring = _static(3, "ring", "green", "medium", 30, 100, T)
    circle.z, square.z, star.z, ring.z = 3, 2, 1, 0
    return Scene(128, 128, T, {"kind": "noise", "color": [150, 150, 146], "seed": 3}, [circle, square, star, ring])


def write_examples(out: str | Path) -> list[Path]:
    """Write pixelworld_image.png, pixelworld_clip.mp4 and pixelworld_clip.json (scene + red-circle masks)."""

    out = Path(out)
    frames, _, _ = render(demo_image_scene())
    write_image(out / "pixelworld_image.png", frames[0])
    scene = demo_clip_scene()
    frames, vis, _ = render(scene)
    _write_mp4(out / "pixelworld_clip.mp4", frames)
    meta = {"description": "PixelWorld demo clip: a red circle moves to the left, a striped blue square moves down, "
                           "a yellow star and a green ring stay still.",
            "expression": "the red circle that moves to the left", "target_obj_id": 0,
            "masks": rle_encode_many(vis[0]), "scene": scene.to_json()}
    atomic_write_text(out / "pixelworld_clip.json", json.dumps(meta, separators=(",", ":")) + "\n")
    return [out / "pixelworld_image.png", out / "pixelworld_clip.mp4", out / "pixelworld_clip.json"]


def write_card_images(out: str | Path, seed: int = 0) -> list[Path]:
    """The dataset card's pictures: one rendered sample per task (images as PNG, clips as 4-frame strips)."""
    import tempfile


    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for video, names in ((False, tasks.IMAGE_TASKS), (True, tasks.VIDEO_TASKS)):
            root = Path(tmp) / ("video" if video else "image")
            generate(root, GenConfig(split="train", num=len(names), seed=seed, video=video, video_format="png"),
                     workers=1)
            for sample in native.load_samples(root):
                pic = render_strip(root, sample, num=4) if video else render_sample(root, sample, scale=2)[0]
                path = out / f"{'video' if video else 'image'}_{sample['task']}.png"
                viz.save_image(path, pic)
                written.append(path)
    return written


EXAMPLE_NAMES = {"image": "pixelworld_image.png", "clip": "pixelworld_clip.mp4"}


def example_media() -> dict[str, Path]:
    """The demo's example image and clip: the repository's `examples/` when present (a source checkout), else
    rendered once into `$PIXELWISE_CACHE/examples` (default `~/.cache/pixelwise/examples`)."""
    import os

    repo_examples = Path(__file__).resolve().parents[3] / "examples"
    if all((repo_examples / n).is_file() for n in EXAMPLE_NAMES.values()):
        return {k: repo_examples / n for k, n in EXAMPLE_NAMES.items()}
    cache = Path(os.environ.get("PIXELWISE_CACHE", Path.home() / ".cache" / "pixelwise")) / "examples"
    if not all((cache / n).is_file() for n in EXAMPLE_NAMES.values()):
        write_examples(cache)
    return {k: cache / n for k, n in EXAMPLE_NAMES.items()}
