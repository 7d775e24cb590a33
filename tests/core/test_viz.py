import numpy as np
from PIL import Image

from pixelwise.core import viz


def test_overlay_colors_are_stable_per_object_id():
    frame = np.full((40, 60, 3), 100, np.uint8)
    m = np.zeros((40, 60), bool)
    m[10:30, 20:40] = True
    a = viz.overlay_masks(frame, [m], ids=[3], contour=False, labels=["x"])
    b = viz.overlay_masks(frame, [np.zeros_like(m), m], ids=[0, 3], contour=False, labels=[None, "x"])
    assert np.array_equal(a, b)  # same id -> same color, whatever else is drawn
    inside = a[25, 30].astype(int)
    expected = (np.array([100] * 3) * 0.55 + np.array(viz.color_for(3)) * 0.45).round()
    assert np.abs(inside - expected).max() <= 1
    assert np.array_equal(a[0:5, 0:5], frame[0:5, 0:5])  # untouched outside


def test_side_by_side_and_files(tmp_path):
    p = np.zeros((20, 30, 3), np.uint8)
    g = np.full((20, 30, 3), 255, np.uint8)
    sbs = viz.side_by_side(p, g)
    assert sbs.shape == (20, 64, 3)
    viz.save_image(tmp_path / "a.png", sbs)
    assert Image.open(tmp_path / "a.png").size == (64, 20)
    viz.save_animation(tmp_path / "a.gif", [p, g, p], fps=5)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 3
