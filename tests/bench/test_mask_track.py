from __future__ import annotations

import numpy as np
import pytest

from pixelwise.core import export as export_mod
from pixelwise.core.results import MaskTrack, Result, SegObject


def _masks(t: int = 5, h: int = 12, w: int = 16) -> np.ndarray:
    m = np.zeros((t, h, w), bool)
    for k in range(1, t):
        m[k, k: k + 3, 2 * k: 2 * k + 4] = True
    return m


def test_mask_track_behaves_like_the_dense_array():
    dense = _masks()
    track = MaskTrack(5, (12, 16))
    for t, m in enumerate(dense):
        track[t] = m
    assert track.shape == dense.shape and len(track) == 5 and track.ndim == 3
    assert np.array_equal(np.asarray(track), dense)
    assert all(np.array_equal(a, b) for a, b in zip(track, dense))
    assert np.array_equal(track[-1], dense[-1]) and np.array_equal(track[1:3], dense[1:3])
    assert track.any() and int(track.sum()) == int(dense.sum())
    assert track.rles()[0] is None  # empty frames cost nothing
    assert track.nbytes_held() < dense.size // 8
    with pytest.raises(ValueError, match="does not match"):
        track[0] = np.zeros((3, 3), bool)


def test_result_with_a_track_writes_the_same_json_and_files(tmp_path):
    dense = _masks()
    track = MaskTrack(5, (12, 16))
    for t, m in enumerate(dense):
        track[t] = m
    a = Result("x", [SegObject(0, track)], list(range(5)), (12, 16))
    b = Result("x", [SegObject(0, dense)], list(range(5)), (12, 16))
    assert isinstance(a.objects[0].masks, MaskTrack)
    assert a.to_json() == b.to_json()
    assert a.objects[0].boxes() == b.objects[0].boxes()
    frames = np.zeros((5, 12, 16, 3), np.uint8)
    from pixelwise.core.clip import Clip

    written = a.save(tmp_path / "a", clip=Clip(frames, frame_indices=list(range(5))))
    assert written["overlay"].name == "overlay.gif"


def test_long_result_overlay_is_a_bounded_preview(tmp_path, monkeypatch):
    from PIL import Image

    from pixelwise.core.clip import Clip

    monkeypatch.setattr(export_mod, "OVERLAY_MAX_FRAMES", 4)
    dense = _masks(t=10)
    r = Result("x", [SegObject(0, dense)], list(range(10)), (12, 16))
    written = r.save(tmp_path, clip=Clip(np.zeros((10, 12, 16, 3), np.uint8), frame_indices=list(range(10))))
    assert Image.open(written["overlay"]).n_frames <= 4
    assert len(list((tmp_path / "masks").glob("*.png"))) == 10  # masks still cover every frame
