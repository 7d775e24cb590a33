"""95 % bootstrap intervals of benchmark scores (`pixelwise.eval.intervals`): they contain the score, shrink with
more samples, follow each metric's own aggregation (cIoU: total I / total U), and are absent when the rows lack it."""

from __future__ import annotations

import numpy as np

from pixelwise.eval.intervals import bootstrap_interval


def test_intervals_follow_the_metric_and_shrink_with_samples():
    rng = np.random.default_rng(0)
    few = [{"correct": bool(c)} for c in rng.random(50) < 0.6]
    many = [{"correct": bool(c)} for c in rng.random(800) < 0.6]
    lo, hi = bootstrap_interval("Acc", few)
    acc = np.mean([r["correct"] for r in few])
    assert lo <= acc <= hi and 0.15 < hi - lo < 0.4  # about +-1.96 sqrt(0.24 / 50)
    lo2, hi2 = bootstrap_interval("Acc", many)
    assert hi2 - lo2 < (hi - lo) / 3

    # cIoU is a ratio of sums: one large object dominates it, unlike the mean of per-sample IoUs
    rows = [{"I": 900, "U": 1000, "IoU": 0.9}] + [{"I": 0, "U": 10, "IoU": 0.0}] * 9
    lo, hi = bootstrap_interval("cIoU", rows)
    assert lo < 900 / 1090 <= hi <= 0.9
    _, ghi = bootstrap_interval("gIoU", rows)
    assert ghi < 0.5
    assert bootstrap_interval("J&F", [{"J": 0.5, "F": 0.7}] * 5) == (0.6, 0.6)
    assert bootstrap_interval("cIoU", [{"IoU": 0.3}]) is None and bootstrap_interval("PSNR", few) is None
