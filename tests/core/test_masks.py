import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from pixelwise.core import masks
from pixelwise.core.errors import MaskError


def random_masks(n=200, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = rng.integers(1, 70, 2)
        yield rng.random((h, w)) < rng.random()


def test_rle_roundtrip_is_byte_identical_to_pycocotools():
    for m in random_masks():
        ours = masks.rle_encode(m)
        ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"].encode() == ref["counts"]
        assert ours["size"] == [m.shape[0], m.shape[1]]
        assert np.array_equal(masks.rle_decode(ours), m)
        json.dumps(ours)  # JSON-ready


def test_rle_encode_many_matches_single():
    stack = np.stack([m for m in random_masks(5) if m.shape == (1, 1)] or [np.zeros((1, 1), bool)])
    rng = np.random.default_rng(1)
    stack = rng.random((7, 33, 41)) < 0.4
    assert masks.rle_encode_many(stack) == [masks.rle_encode(m) for m in stack]


def test_uncompressed_rle_decodes():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    # column-major runs: col0 4 zeros, col1: 1 zero, 2 ones, 1 zero ...
    counts = []
    flat = m.flatten(order="F")
    val, run = False, 0
    for v in flat:
        if v == val:
            run += 1
        else:
            counts.append(run)
            val, run = v, 1
    counts.append(run)
    assert np.array_equal(masks.rle_decode({"size": [4, 5], "counts": counts}), m)


@pytest.mark.parametrize(
    "rle, match",
    [
        ({"size": [4, 4], "counts": [3, 2]}, "sum to 5"),
        ({"size": [4, 4]}, "'size' and 'counts'"),
        ({"size": [4, -1], "counts": "0"}, "non-negative"),
        ({"size": [4, 4], "counts": "00000000"}, "cover"),
        ({"size": [4, 4], "counts": "\x7f\x7f"}, "invalid character"),
        ("not an rle", "'size' and 'counts'"),
    ],
)
def test_bad_rle_raises_mask_error(rle, match):
    with pytest.raises(MaskError, match=match):
        masks.rle_decode(rle)


def test_rle_size_mismatch_is_reported():
    r = masks.rle_encode(np.ones((3, 3), bool))
    with pytest.raises(MaskError, match="does not match"):
        masks.rle_decode(r, expected_size=(4, 3), source="x.json")


def test_polygon_to_mask_matches_coco():
    poly = [[2.0, 2.0, 20.0, 3.0, 15.0, 18.0]]
    m = masks.polygons_to_mask(poly, 24, 30)
    ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(poly, 24, 30))).astype(bool)
    assert np.array_equal(m, ref) and m.sum() > 50


def test_iou_box_resize_components():
    a = np.zeros((10, 10), bool)
    a[2:5, 3:8] = True
    b = np.zeros((10, 10), bool)
    b[2:5, 5:8] = True
    assert masks.mask_iou(a, b) == pytest.approx(9 / 15)
    assert masks.mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert np.allclose(masks.pairwise_iou(np.stack([a, b]), np.stack([a, b])), [[1, 0.6], [0.6, 1]])
    assert masks.mask_to_box(a) == (3, 2, 8, 5)
    assert masks.mask_to_box(np.zeros((4, 4), bool)) is None
    up = masks.resize_mask(a, 20, 20)
    assert up.dtype == bool and up.sum() == 4 * a.sum()  # nearest: exact 2x
    two = a.copy()
    two[8:10, 0:2] = True
    parts = masks.connected_components(two)
    assert [p.sum() for p in parts] == [15, 4]


def test_mask_png_roundtrip(tmp_path):
    for k, m in enumerate(random_masks(20, seed=3)):
        p = masks.save_mask_png(tmp_path / f"m{k}.png", m)
        assert np.array_equal(masks.load_mask_png(p), m)


def test_rle_with_an_absurd_size_is_refused_before_decoding():
    import subprocess
    import sys

    from pixelwise.core.errors import MaskError
    from pixelwise.core.masks import rle_decode

    for counts in ("0", [0]):
        with pytest.raises(MaskError, match="over the limit"):
            rle_decode({"size": [1_000_000, 1_000_000], "counts": counts})
    # in a child process, so that a regression (pycocotools' SIGSEGV) fails this test instead of killing the run
    code = ("from pixelwise.core.masks import rle_decode\n"
            "try:\n    rle_decode({'size': [1000000, 1000000], 'counts': '0'})\n"
            "except Exception as e:\n    print(type(e).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "MaskError", (r.returncode, r.stderr[-500:])
