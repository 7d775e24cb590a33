"""Metric edge cases computed by hand, plus a cross-check of the vectorised J/F against a slow, literal
re-statement of the DAVIS definitions (scipy dilation instead of OpenCV, per-pixel boundary rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from pixelwise.core.errors import MaskError
from pixelwise.eval import metrics as M


def px(h: int, w: int, *points: tuple[int, int]) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for y, x in points:
        m[y, x] = True
    return m


# --- slow literal reference -------------------------------------------------------------------------------------


def ref_boundary(seg: np.ndarray) -> np.ndarray:
    h, w = seg.shape
    out = np.zeros_like(seg)
    for y in range(h):
        for x in range(w):
            v = seg[y, x]
            right = seg[y, x + 1] if x + 1 < w else False
            down = seg[y + 1, x] if y + 1 < h else False
            diag = seg[y + 1, x + 1] if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                out[y, x] = False
            elif y == h - 1:
                out[y, x] = v != right
            elif x == w - 1:
                out[y, x] = v != down
            else:
                out[y, x] = (v != right) or (v != down) or (v != diag)
    return out


def ref_f(pred: np.ndarray, gt: np.ndarray, r: int | None = None) -> float:
    h, w = gt.shape
    r = math.ceil(0.008 * math.hypot(h, w)) if r is None else r
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    fp = yy**2 + xx**2 <= r * r
    pb, gb = ref_boundary(pred), ref_boundary(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    prec = (pb & ndimage.binary_dilation(gb, fp)).sum() / float(n_p)
    rec = (gb & ndimage.binary_dilation(pb, fp)).sum() / float(n_g)
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def ref_j(pred: np.ndarray, gt: np.ndarray) -> float:
    u = (pred | gt).sum()
    return 1.0 if u == 0 else (pred & gt).sum() / u


# --- J ----------------------------------------------------------------------------------------------------------


def test_j_edge_cases():
    e = np.zeros((4, 5), bool)
    full = np.ones((4, 5), bool)
    assert M.j_score(e, e) == 1.0  # nothing to find, nothing found
    assert M.j_score(full, e) == 0.0  # hallucinated object
    assert M.j_score(e, full) == 0.0  # missed object
    assert M.j_score(px(4, 5, (1, 1)), px(4, 5, (1, 1))) == 1.0
    assert M.j_score(px(4, 5, (1, 1), (1, 2)), px(4, 5, (1, 1))) == 0.5
    assert M.j_score(np.full((4, 5), 255, np.uint8), full) == 1.0  # any non-zero is foreground


def test_j_rejects_size_mismatch():
    with pytest.raises(MaskError, match="resolution"):
        M.j_score(np.zeros((4, 5)), np.zeros((5, 4)))


def test_j_void_pixels_are_excluded():
    gt = px(3, 3, (0, 0), (1, 1))
    pred = px(3, 3, (0, 0), (2, 2))
    void = px(3, 3, (2, 2))
    assert M.j_scores(pred, gt, void)[0] == 0.5
    assert M.j_scores(pred, gt)[0] == pytest.approx(1 / 3)


# --- F ----------------------------------------------------------------------------------------------------------


def test_boundary_map_rules():
    # a single pixel is seen from the pixels above/left of it, offset half a pixel towards the origin
    b = M.boundary_map(px(5, 5, (2, 2)))[0]
    assert set(zip(*np.nonzero(b))) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    # the image border is never a boundary
    assert not M.boundary_map(np.ones((4, 6), bool)).any()
    # a pixel in the bottom-right corner only marks its neighbours
    b = M.boundary_map(px(5, 5, (4, 4)))[0]
    assert set(zip(*np.nonzero(b))) == {(3, 3), (3, 4), (4, 3)}


def test_f_edge_cases():
    e = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    obj = px(5, 5, (2, 2))
    assert M.f_score(e, e) == 1.0
    assert M.f_score(e, obj) == 0.0  # P = 1, R = 0
    assert M.f_score(obj, e) == 0.0  # P = 0, R = 1
    assert M.f_score(full, full) == 1.0  # neither has a boundary
    assert M.f_score(full, obj) == 0.0  # J stays > 0, F does not
    assert M.j_score(full, obj) == 1 / 25


def test_f_tolerance_on_one_pixel_objects():
    # 5x5 → radius ceil(0.008 * 7.07) = 1: a one-pixel shift is within tolerance, a far pixel is not
    gt = px(5, 5, (2, 2))
    assert M.f_score(px(5, 5, (2, 3)), gt) == 1.0
    assert M.j_score(px(5, 5, (2, 3)), gt) == 0.0
    assert M.f_score(px(5, 5, (0, 0)), px(5, 5, (4, 4))) == 0.0


def test_tolerance_radius_matches_davis_figures():
    assert M.tolerance_radius(480, 854) == 8
    assert M.tolerance_radius(720, 1280) == 12
    assert M.tolerance_radius(1080, 1920) == 18
    assert M.tolerance_radius(10, 10, bound_th=3) == 3


def test_disk_is_exact():
    d = M.disk(2)
    assert d.shape == (5, 5)
    assert d.sum() == 13  # x² + y² ≤ 4
    assert d[0, 2] == 1 and d[0, 1] == 0 and d[1, 1] == 1


def test_f_is_symmetric_and_partial():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = np.zeros((20, 20), bool)
    pred[5:15, 5:12] = True
    f = M.f_score(pred, gt)
    assert 0 < f < 1
    assert f == M.f_score(gt, pred)
    assert f == ref_f(pred, gt)


def random_cases(rng: np.random.Generator):
    sizes = [(1, 9), (9, 1), (5, 5), (7, 13), (31, 17), (64, 48)]
    for h, w in sizes:
        for _ in range(12):
            kind = rng.integers(0, 6)
            if kind == 0:  # noise
                a, b = rng.random((h, w)) < 0.3, rng.random((h, w)) < 0.3
            elif kind == 1:  # empty vs noise
                a, b = np.zeros((h, w), bool), rng.random((h, w)) < 0.05
            elif kind == 2:  # full vs rectangle
                a = np.ones((h, w), bool)
                b = np.zeros((h, w), bool)
                b[: max(1, h // 2), : max(1, w // 3)] = True
            elif kind == 3:  # border-touching blobs
                a = np.zeros((h, w), bool)
                b = np.zeros((h, w), bool)
                a[h // 2 :, w // 2 :] = True
                b[h // 3 :, w // 3 :] = True
            elif kind == 4:  # single pixels
                a = px(h, w, (int(rng.integers(h)), int(rng.integers(w))))
                b = px(h, w, (int(rng.integers(h)), int(rng.integers(w))))
            else:  # shifted copies
                a = rng.random((h, w)) < 0.5
                b = np.roll(a, 1, axis=1)
            yield a, b


def test_vectorised_jf_equals_literal_definition_exactly():
    rng = np.random.default_rng(0)
    for a, b in random_cases(rng):
        assert M.j_score(a, b) == ref_j(a, b)
        assert M.f_score(a, b) == ref_f(a, b)


def test_jf_video_stack_equals_per_frame():
    rng = np.random.default_rng(1)
    preds = rng.random((6, 24, 40)) < 0.4
    gts = rng.random((6, 24, 40)) < 0.4
    gts[2] = False
    preds[2] = False  # absent target, nothing predicted: counts as a perfect frame
    out = M.jf_video(preds, gts)
    js = [M.j_score(p, g) for p, g in zip(preds, gts)]
    fs = [M.f_score(p, g) for p, g in zip(preds, gts)]
    assert out["J_frames"][2] == 1.0 and out["F_frames"][2] == 1.0
    assert out["J"] == float(np.mean(js))
    assert out["F"] == float(np.mean(fs))
    assert out["J&F"] == (out["J"] + out["F"]) / 2


def test_jf_video_255_frames():
    gts = np.zeros((255, 8, 8), bool)
    gts[:100, 2:5, 2:5] = True
    preds = gts.copy()
    preds[200:, 0, 0] = True  # 55 frames with a hallucinated pixel on an absent target: J = F = 0 there
    out = M.jf_video(preds, gts)
    assert out["J"] == pytest.approx(200 / 255)
    assert out["F"] == pytest.approx(200 / 255)


# --- cIoU / gIoU --------------------------------------------------------------------------------------------------


def test_ciou_giou_hand_computed():
    g1 = px(2, 2, (0, 0), (0, 1))
    p1 = px(2, 2, (0, 0))  # I = 1, U = 2
    g2 = np.zeros((2, 2), bool)
    p2 = np.zeros((2, 2), bool)  # empty/empty: IoU 1, adds nothing to cIoU
    g3 = px(2, 2, (1, 1))
    p3 = px(2, 2, (1, 0))  # I = 0, U = 2
    out = M.ciou_giou([p1, p2, p3], [g1, g2, g3])
    assert out["cIoU"] == 1 / 4
    assert out["gIoU"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_ciou_ignore_pixels_excluded():
    gt = px(1, 4, (0, 0), (0, 1))
    pred = px(1, 4, (0, 0), (0, 2), (0, 3))
    ignore = px(1, 4, (0, 2))
    out = M.ciou_giou([pred], [gt], [ignore])
    assert out["intersection"] == 1 and out["union"] == 3


def test_ciou_all_empty_is_zero_like_lisa():
    e = np.zeros((3, 3), bool)
    out = M.ciou_giou([e], [e])
    assert out["cIoU"] == 0.0 and out["gIoU"] == 1.0


# --- ReVOS A / R, PixelQA volume J/F ------------------------------------------------------------------------------


def test_revos_accuracy_and_robustness():
    gt = np.zeros((2, 10, 10), bool)
    gt[:, :5, :5] = True  # 25 px
    fg = gt.copy()
    fg[:, 8:, 8:] = True  # 29 px annotated in the video
    pred = gt.copy()
    pred[0, 9, 0] = True  # 1 false positive on frame 0
    assert M.accuracy(pred, gt) == pytest.approx((99 / 100 + 1) / 2)
    assert M.robustness(pred, gt, fg) == pytest.approx((1 - 1 / (29 + 1e-6) + 1) / 2)
    # no annotated object: an empty prediction is robust, any prediction is not
    z = np.zeros((1, 4, 4), bool)
    assert M.robustness(z, z, z) == 1.0
    assert M.robustness(px(4, 4, (0, 0))[None], z, z) == 0.0


def test_pixelqa_volume_jf():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2, :2] = True  # 4 px
    pred = np.zeros_like(gt)
    pred[0, :2, :1] = True  # 2 px, all correct
    pred[1, 3, 3] = True  # 1 px false positive
    out = M.pixelqa_volume_jf(pred, gt)
    assert out["J"] == pytest.approx(2 / 5)
    p, r = 2 / 3, 2 / 4
    assert out["F"] == pytest.approx(2 * p * r / (p + r), abs=1e-5)  # the 1e-6 epsilons shift it slightly
    e = np.zeros((2, 4, 4), bool)
    assert M.pixelqa_volume_jf(e, e) == {"J": 0.0, "F": 0.0, "J&F": 0.0}  # not 1


# --- boxes, answers, matching -------------------------------------------------------------------------------------


def test_box_accuracy():
    assert M.box_iou((0, 0, 10, 10), (0, 0, 10, 5)) == 0.5
    assert M.box_accuracy([(0, 0, 10, 10), (0, 0, 10, 2), None], [(0, 0, 10, 5)] * 3) == 1 / 3


@pytest.mark.parametrize(
    "text, letter",
    [("(B) A hat", "B"), ("The answer is (C).", "C"), ("D) watch", "D"), ("A.", "A"), ("a", "a"), (" A", " "), ("", "")],
)
def test_videorefer_parser(text, letter):
    assert M.parse_videorefer_choice(text) == letter


@pytest.mark.parametrize(
    "text, letter", [("C) because", "c"), ("(b).", "b"), ("Answer: C", "a"), ("zebra", None), ("", None)]
)
def test_pixelqa_parser(text, letter):
    assert M.parse_pixelqa_choice(text) == letter


def test_mc_accuracy_is_micro():
    out = M.mc_accuracy(["A", "b", None, "C"], ["A", "B", "C", "D"], ["x", "x", "x", "y"])
    assert out["overall"] == 0.5
    assert out["x"] == pytest.approx(2 / 3) and out["y"] == 0.0


def test_match_targets_maximises_iou():
    g = np.zeros((2, 4, 4), bool)
    g[0, :2] = True
    g[1, 2:] = True
    p = np.stack([g[1], g[0], np.zeros((4, 4), bool)])
    m = M.match_targets(p, g)
    assert sorted(m.pairs) == [(0, 1), (1, 0)]
    assert m.unmatched_preds == [2] and m.unmatched_gts == []


def test_muse_scores():
    g = np.zeros((2, 4, 4), bool)
    g[0, :2] = True
    g[1, 2:] = True
    # question 1: both targets found (in swapped order); question 2: one target missed, one extra mask
    extra = np.zeros((1, 4, 4), bool)
    extra[0, 0, 0] = True
    out = M.muse_ciou_giou([[(g[::-1], g), (extra, g[:1])]])
    # q1: IoU 1, 1; q2: extra (1px) vs g0 (8px): IoU 1/8 — matched; n_pred = 3, n_gt = 3
    assert out["gIoU"] == pytest.approx((1 + 1 + 1 / 8) / 3)
    assert out["cIoU"] == pytest.approx((8 + 8 + 1) / (8 + 8 + 8))


def test_chunked_processing_gives_identical_values(monkeypatch):
    rng = np.random.default_rng(3)
    preds = rng.random((7, 20, 30)) < 0.3
    gts = rng.random((7, 20, 30)) < 0.3
    whole = M.jf_video(preds, gts)
    monkeypatch.setattr(M, "_CHUNK_PIXELS", 2 * 20 * 30)  # chunks of 2 frames
    chunked = M.jf_video(preds, gts)
    assert np.array_equal(whole["J_frames"], chunked["J_frames"])
    assert np.array_equal(whole["F_frames"], chunked["F_frames"])


def test_kernel_larger_than_image_matches_definition():
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.random((4, 6)) < 0.4, rng.random((4, 6)) < 0.4
        assert M.f_scores(a, b, bound_th=5)[0] == ref_f(a, b, r=5)
        assert M.f_scores(a, b, bound_th=1)[0] == ref_f(a, b, r=1)


def test_ciou_giou_lisa_epsilons():
    one = px(2, 2, (0, 0))
    exact = M.ciou_giou([one], [one])
    lisa = M.ciou_giou([one], [one], lisa_epsilon=True)
    assert exact["gIoU"] == 1.0 and exact["cIoU"] == 1.0
    assert lisa["gIoU"] == pytest.approx((1 / (1 + 1e-5)) / (1 + 1e-5), abs=1e-15)
    assert lisa["cIoU"] == pytest.approx(1 / (1 + 1e-10), abs=1e-15)
    e = np.zeros((2, 2), bool)
    assert M.ciou_giou([e], [e], lisa_epsilon=True)["gIoU"] == pytest.approx(1 / (1 + 1e-5))


# --- properties on arbitrary small masks (hypothesis) ---------------------------------------------------------------

mask_pairs = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda hw: st.tuples(arrays(bool, hw), arrays(bool, hw))
)


@settings(max_examples=150, deadline=None)
@given(mask_pairs)
def test_jf_match_literal_definition_on_any_mask(pair):
    a, b = pair
    assert M.j_score(a, b) == ref_j(a, b)
    assert M.f_score(a, b) == ref_f(a, b)
    assert M.f_score(a, b) == M.f_score(b, a)
    assert 0.0 <= M.j_score(a, b) <= 1.0


def test_match_targets_zero_target_question_does_not_crash():
    from pixelwise.eval.metrics import match_targets, muse_ciou_giou

    empty = np.zeros((0, 4, 4), bool)
    assert match_targets(empty, empty).pairs == []
    one = np.ones((1, 4, 4), bool)
    m = match_targets(one, empty)
    assert m.unmatched_preds == [0] and m.unmatched_gts == []
    # a correct "nothing matches" answer adds no pair; a hallucinated mask on a zero-target question costs a pair
    assert muse_ciou_giou([[(empty, empty)], [(one, one)]])["gIoU"] == 1.0
    assert muse_ciou_giou([[(one, empty)], [(one, one)]])["gIoU"] == 0.5
