"""Aggregation protocols: the small arithmetic that decides the last digit of a benchmark row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixelwise.eval import protocols as P
from pixelwise.eval.protocols import ExpressionScore as S


def test_mevis_plain_means():
    out = P.mevis([S("a", 1.0, 0.5), S("b", 0.5, 0.0)])
    assert out == {"J": 75.0, "F": 25.0, "J&F": 50.0}


def test_revos_rounds_per_expression_and_macro_averages():
    scores = [
        S("a", 0.123456, 0.5, A=1.0, R=1.0, type_id=0),
        S("b", 0.5, 0.5, A=1.0, R=0.0, type_id=1),
        S("c", 1.0, 1.0, A=1.0, R=1.0, type_id=1),
        S("d", 0.0, 0.0, A=0.0, R=0.0, type_id=2),  # never scored
    ]
    out = P.revos(scores)
    assert out["referring"]["J"] == 12.35
    assert out["reasoning"]["J"] == 75.0
    assert out["overall"]["J"] == (12.35 + 75.0) / 2
    assert out["reasoning"]["R"] == 50.0
    assert out["referring"]["J&F"] == (12.35 + 50.0) / 2  # from the subset means, not per expression


def test_revos_empty_subset_is_nan_like_official():
    out = P.revos([S("a", 1.0, 1.0, A=1.0, R=1.0, type_id=0)])
    assert math.isnan(out["reasoning"]["J"]) and math.isnan(out["overall"]["J"])


def test_ref_sav_long_short():
    out = P.ref_sav([S("a", 1.0, 1.0, A=1.0, type_id=0), S("b", 0.0, 0.5, A=0.5, type_id=1)])
    assert out["long"]["J&F"] == 100.0
    assert out["short"]["J&F"] == 25.0
    assert out["overall"]["J&F"] == 62.5


def test_ref_davis17_visa_rounds_final():
    out = P.ref_davis17_visa([S("a", 0.123456, 0.654321)])
    assert out == {"J": 12.35, "F": 65.43, "J&F": 38.89}


def test_groundmore_window_and_types():
    frames = P.groundmore_window(100, 30, 59)
    assert len(frames) == 20 and frames[0] == (0, False) and frames[-1] == (99, False)
    assert [i for i, inside in frames if inside] == [31, 36, 41, 46, 52, 57]
    assert P.groundmore_action_frames("01:10", "1:15", "1:20") == (30, 59)
    out = P.groundmore([S("a", 1.0, 1.0, q_type="Causal"), S("b", 0.0, 0.0, q_type="Descriptive")])
    assert out["overall"]["J&F"] == 50.0 and out["Causal"]["J"] == 100.0


def test_davis_unsupervised_hungarian_and_void():
    gt = np.zeros((2, 6, 6), np.uint8)
    gt[:, :3, :3] = 1
    gt[:, 3:, 3:] = 2
    gt[:, 0, 5] = 255  # void
    pred = np.zeros_like(gt)
    pred[:, :3, :3] = 2  # ids permuted: matching must undo it
    pred[:, 3:, 3:] = 1
    pred[:, 0, 5] = 1  # inside void: ignored
    j, f = P.davis_unsupervised_sequence(gt, pred)
    assert (j == 1).all() and (f == 1).all()
    out = P.ref_davis17_referformer([{"seq": (gt, pred)}, {"seq": (gt, np.zeros_like(pred))}])
    assert out["J"] == pytest.approx(50.0)


def test_davis_counts_objects_from_first_frame():
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[0, 0, 0] = 1
    gt[1, 1, 1] = 2  # object 2 does not exist in frame 0: ignored
    j, _ = P.davis_unsupervised_sequence(gt, gt)
    assert j.shape == (1, 2)


def test_db_statistics_and_uint8_decay_quirk():
    m, r, d = P.db_statistics(np.array([1.0, 1.0, 0.2, 0.2, 0.0]))
    # bins: ids = round(linspace(1, 5, 5)) - 1 = [0, 1, 2, 3, 4] → first [1, 1], last [0.2, 0.0]
    assert m == pytest.approx(0.48) and r == 0.4 and d == pytest.approx(1.0 - 0.1)
    assert math.isnan(P.db_statistics(np.ones(256))[2])  # uint8 255 + 1 wraps: empty last bin
    assert not math.isnan(P.db_statistics(np.ones(255))[2])
    assert P.db_statistics(np.array([np.nan, 1.0]))[0] == 1.0
