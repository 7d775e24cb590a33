"""The map-style dataset over a native folder."""

from __future__ import annotations

import numpy as np
import pytest

from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.data.pixelworld import native
from pixelwise.data.pixelworld.dataset import PixelWorldDataset


def test_items_carry_media_masks_prompts_and_ground_truth(image_dir):
    ds = PixelWorldDataset(image_dir)
    raw = native.load_samples(image_dir)
    assert len(ds) == len(raw)
    for i in range(len(ds)):
        item = ds[i]
        assert item.sample == raw[i]
        assert item.frames.shape == (1, 128, 128, 3)
        assert item.masks.shape == (len(raw[i]["targets"]), 1, 128, 128)
        res = item.result()
        assert res.answer == raw[i]["answer"] and len(res.objects) == len(raw[i]["targets"])
        for p, d in zip(item.prompts, raw[i]["prompts"]):
            assert isinstance(p, {"point": Point, "box": Box, "mask": MaskPrompt}[d["type"]])
            p.validate(128, 128, 1)
        if item.task == "editing":
            assert item.target_frames is not None and item.target_frames.shape == item.frames.shape


def test_task_filter_and_index_errors(video_dir):
    ds = PixelWorldDataset(video_dir, tasks=["pixelqa"], load_media=False)
    assert len(ds) > 0 and set(ds.tasks) == {"pixelqa"}
    item = ds[0]
    assert item.frames is None
    assert item.masks.shape[1] == item.sample["num_frames"]
    assert np.array_equal(item.masks[0].any((1, 2)), np.array([m is not None for m in item.sample["targets"][0]["masks"]]))
    with pytest.raises(IndexError):
        ds[len(ds)]
