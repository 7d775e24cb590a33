"""The committed example media match the demo scenes the README describes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pixelwise.core.masks import rle_decode
from pixelwise.core.media import load_media
from pixelwise.data.pixelworld import grammar
from pixelwise.data.pixelworld.demo import demo_clip_scene, demo_image_scene, write_examples
from pixelwise.data.pixelworld.render import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_demo_clip_red_circle_is_the_only_shape_moving_left():
    scene = demo_clip_scene()
    r = grammar.resolve({"kind": "motion", "filter": {}, "motion": "moves_left"}, scene)
    assert r.unique and r.targets == [0]
    r = grammar.resolve({"kind": "attr", "filter": {"color": "red", "shape": "circle"}}, scene)
    assert r.targets == [0]


def test_write_examples_is_deterministic(tmp_path):
    write_examples(tmp_path / "a")
    write_examples(tmp_path / "b")
    for name in ("pixelworld_image.png", "pixelworld_clip.mp4", "pixelworld_clip.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_committed_examples_are_the_demo_scenes():
    img = load_media(EXAMPLES / "pixelworld_image.png").frames[0]
    frames, _, _ = render(demo_image_scene())
    assert np.array_equal(img, frames[0])
    clip = load_media(EXAMPLES / "pixelworld_clip.mp4").frames
    assert clip.shape == (24, 128, 128, 3)
    meta = json.loads((EXAMPLES / "pixelworld_clip.json").read_text())
    masks = np.stack([rle_decode(m) for m in meta["masks"]])
    xs = [np.nonzero(m)[1].mean() for m in masks]
    assert xs[0] > xs[-1] + 50  # the red circle moves left
    # the decoded red circle pixels are red
    assert (clip[0][masks[0]].mean(0) > np.array([180, 0, 0])).all() and clip[0][masks[0]].mean(0)[1] < 80
