import numpy as np
from PIL import Image

from pixelwise.core import viz
from pixelwise.core.export import overlay_result
from pixelwise.core.prompts import Box, Point
from pixelwise.core.results import Result, SegObject


def test_overlay_colors_are_stable_per_object_id():
    frame = np.full((40, 60, 3), 100, np.uint8)
    m = np.zeros((40, 60), bool)
    m[10:30, 20:40] = True
    a = viz.overlay_masks(frame, [m], ids=[3], contour=False, labels=["x"], scale=1)
    b = viz.overlay_masks(frame, [np.zeros_like(m), m], ids=[0, 3], contour=False, labels=[None, "x"], scale=1)
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


def test_small_media_are_enlarged_and_labels_sit_beside_the_mask():
    frame = np.full((128, 128, 3), 120, np.uint8)
    m = np.zeros((128, 128), bool)
    m[40:80, 40:80] = True
    out = viz.overlay_masks(frame, [m], ids=[0], labels=["[0]"])
    assert out.shape == (512, 512, 3)  # 4x, nearest neighbour
    big = np.repeat(np.repeat(m, 4, 0), 4, 1)
    fill = (np.array([120] * 3) * 0.55 + np.array(viz.color_for(0)) * 0.45).round()
    # every pixel inside the mask (away from its outline) shows the fill: no label was drawn over it
    inner = out[160 + 8:320 - 8, 160 + 8:320 - 8].reshape(-1, 3).astype(int)
    assert np.abs(inner - fill).max() <= 1
    # the label is there, beside it (the label box is the object's colour)
    label_px = np.all(out == np.array(viz.color_for(0), np.uint8), axis=-1) & ~big
    assert label_px.sum() > 50


def test_a_mask_gets_a_colour_that_contrasts_with_its_object():
    red = np.zeros((64, 64, 3), np.uint8)
    red[...] = (220, 30, 40)  # the palette's colour 0 is red: on a red object the mask takes another colour
    m = np.ones((64, 64), bool)
    (c,) = viz.object_colors([red], [[m]], [0])
    assert c != viz.color_for(0) and np.linalg.norm(np.subtract(c, (220, 30, 40))) >= viz.MIN_CONTRAST
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert viz.object_colors([grey], [[m]], [0]) == [viz.color_for(0)]


def test_the_request_prompts_are_drawn_on_the_result():
    frame = np.full((100, 100, 3), 30, np.uint8)
    m = np.zeros((1, 100, 100), bool)
    m[0, 60:90, 60:90] = True
    result = Result("It is [0].", [SegObject(0, m)], [0], (100, 100),
                    prompts=[Point(20, 20), Box(5, 50, 40, 95)])
    (drawn,) = overlay_result(frame[None], result)
    (plain,) = overlay_result(frame[None], Result("It is [0].", [SegObject(0, m)], [0], (100, 100)))
    k = viz.overlay_scale(100, 100)
    yellow = np.all(drawn == np.array(viz.PROMPT_COLOR, np.uint8), axis=-1)
    assert yellow[20 * k:21 * k, 20 * k:21 * k].all()  # the point
    assert yellow[50 * k:95 * k, 5 * k].any() and not yellow[70 * k, 20 * k]  # the box's edge, not its inside
    assert not np.all(plain == np.array(viz.PROMPT_COLOR, np.uint8), axis=-1).any()
