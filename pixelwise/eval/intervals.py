"""95 % bootstrap intervals of a benchmark score, from the per-sample rows of its report.

A score over 50-200 samples moves by several points between seeds; an interval lets a reader tell a difference
between two models from noise. The samples are resampled with replacement and the score recomputed the way the
benchmark computes it (cIoU: total intersection over total union; detection F1: 2 x matched boxes over predicted + true boxes; gIoU, J&F, accuracy, masked IoU: means).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def per_sample_parts(metric: str, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(numerators, denominators) per sample whose sums' ratio is the metric (in [0, 1]); None when the rows do not
    carry what the metric needs."""
    try:
        if metric == "cIoU":
            return (np.array([float(r["I"]) for r in rows]), np.array([float(r["U"]) for r in rows]))
        if metric == "F1":  # micro F1 of matched boxes = 2 hits / (predicted + true boxes); detection rows only
            rows = [r for r in rows if "hits" in r]
            return (np.array([2.0 * float(r["hits"]) for r in rows]),
                    np.array([float(len(r["boxes"]) + r["targets"]) for r in rows]))
        if metric == "gIoU":
            values = [float(r["IoU"]) for r in rows]
        elif metric == "J&F":
            values = [(float(r["J"]) + float(r["F"])) / 2 for r in rows]
        elif metric == "Acc":
            values = [float(bool(r["correct"])) for r in rows]
        elif metric == "Acc@0.5":  # grounding rows only
            values = [float(float(r["iou"]) >= 0.5) for r in rows if "iou" in r]
        elif metric == "masked_iou":
            values = [float(r["masked_iou"]) for r in rows]
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return np.array(values), np.ones(len(values))


def bootstrap_interval(metric: str, rows: list[dict[str, Any]], resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float] | None:
    """The central `level` interval of the metric (as a fraction) over `resamples` bootstrap resamples."""
    parts = per_sample_parts(metric, rows)
    if parts is None or len(parts[0]) == 0:
        return None
    num, den = parts
    idx = np.random.default_rng(seed).integers(0, len(num), size=(resamples, len(num)))
    dens = den[idx].sum(1)
    empty = 1.0 if metric == "F1" else 0.0  # F1 with nothing predicted and nothing to find is perfect (boxes.py)
    stats = np.divide(num[idx].sum(1), dens, out=np.full(resamples, empty), where=dens > 0)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
