"""How each benchmark turns per-sample metrics into its table row.

One small function per protocol, named after it. Inputs are per-expression/per-question records (fractions in
[0, 1], as `pixelwise.eval.metrics` returns them); outputs are the numbers the official scorer prints, ×100.
The differences between protocols are small but decide the last digit: whether values are rounded per expression,
whether "overall" is a macro mean of two subsets, which frames count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from pixelwise.data.formats.groundmore import groundmore_action_frames, groundmore_window  # noqa: F401 (protocol API)
from pixelwise.eval.metrics import f_scores, j_scores


@dataclass
class ExpressionScore:
    """Scores of one expression (video benchmarks) or question: fractions in [0, 1]."""

    key: str
    J: float
    F: float
    A: float | None = None
    R: float | None = None
    type_id: int | None = None
    q_type: str | None = None
    extras: dict = field(default_factory=dict)


def _mean(values: Iterable[float]) -> float:
    """numpy's mean (pairwise summation, as the official scripts use); NaN for no values, like `np.array([]).mean()`."""
    vals = np.asarray(list(values), dtype=np.float64)
    return float(vals.mean()) if vals.size else math.nan


def _jf_row(j: float, f: float) -> dict[str, float]:
    return {"J": j, "F": f, "J&F": (j + f) / 2}


def mevis(scores: Sequence[ExpressionScore]) -> dict[str, float]:
    """MeViS (`valid_u`, `eval_mevis.py`), also Ref-YouTube-VOS's server metric: J = mean over expressions of the
    per-expression frame-mean J (all frames), same for F; J&F = (J + F) / 2. No rounding, ×100.
    """
    return _jf_row(100 * _mean(s.J for s in scores), 100 * _mean(s.F for s in scores))


def round2(x: float) -> float:
    """×100 rounded to 2 decimals the way ReVOS / Ref-SAV round each expression: `round()` of a numpy float64,
    i.e. numpy's scale-rint-unscale rounding (which can differ from Python's exact `round` in the last place).
    """
    return float(np.round(np.float64(100) * np.float64(x), 2))


def _subset(scores: Sequence[ExpressionScore], names: Sequence[str]) -> dict[str, float]:
    """Means of per-expression rounded values; J&F of the subset is (J + F) / 2 of the subset means.
    A metric nobody computed (R without `mask_dict_foreground.json`) is left out."""
    names = [n for n in names if n in ("J", "F") or all(getattr(s, n) is not None for s in scores)]
    out = {name: _mean(round2(getattr(s, name)) for s in scores) for name in names}
    out["J&F"] = (out["J"] + out["F"]) / 2
    return out


def _macro(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: (a[k] + b[k]) / 2 for k in a if k in b}


def revos(scores: Sequence[ExpressionScore]) -> dict[str, dict[str, float]]:
    """ReVOS (`VISA/tools/eval_revos.py`): per expression J, F, A, R ×100 rounded to 2 decimals; `referring` =
    mean over type_id 0, `reasoning` = mean over type_id 1 (J&F of a subset = mean of its J and F means);
    `overall` = (referring + reasoning) / 2 per metric — a macro mean, not a mean over all expressions.
    type_id 2 expressions are scored by nobody. An empty subset gives NaN, as in the official script.
    """
    names = ("J", "F", "A", "R")
    referring = _subset([s for s in scores if s.type_id == 0], names)
    reasoning = _subset([s for s in scores if s.type_id == 1], names)
    return {"referring": referring, "reasoning": reasoning, "overall": _macro(referring, reasoning)}


def ref_sav(scores: Sequence[ExpressionScore]) -> dict[str, dict[str, float]]:
    """Ref-SAV (Sa2VA `tools/eval/eval_ref_sav.py`): like ReVOS without R — per-expression rounding, `long` =
    type_id 0, `short` = type_id 1, `overall` = (long + short) / 2.
    """
    names = ("J", "F", "A")
    long_ = _subset([s for s in scores if s.type_id == 0], names)
    short = _subset([s for s in scores if s.type_id == 1], names)
    return {"long": long_, "short": short, "overall": _macro(long_, short)}


def ref_davis17_visa(scores: Sequence[ExpressionScore]) -> dict[str, float]:
    """Ref-DAVIS17, VISA / Sa2VA / UniPixel protocol (`VISA/tools/eval_davis17.py`): every expression scored
    independently over all frames (MeViS style), mean over expressions, final J, F, J&F rounded to 2 decimals.
    Not comparable with the ReferFormer protocol (`ref_davis17_referformer`).
    """
    j, f = 100 * _mean(s.J for s in scores), 100 * _mean(s.F for s in scores)
    return {"J": float(np.round(j, 2)), "F": float(np.round(f, 2)), "J&F": float(np.round((j + f) / 2, 2))}


def groundmore(scores: Sequence[ExpressionScore]) -> dict[str, dict[str, float]]:
    """GroundMoRe (`evaluate_groundmore.py`): per question nanmean of per-frame J and F over the 20 sampled frames;
    J, F = mean over questions, J&F = (J + F) / 2, overall and per `q_type` (Causal, Sequential, Counterfactual,
    Descriptive).
    """
    out = {"overall": _jf_row(100 * _mean(s.J for s in scores), 100 * _mean(s.F for s in scores))}
    for t in sorted({s.q_type for s in scores if s.q_type}):
        sel = [s for s in scores if s.q_type == t]
        out[t] = _jf_row(100 * _mean(s.J for s in sel), 100 * _mean(s.F for s in sel))
    return out


def nanmean(values: np.ndarray) -> float:
    """DAVIS `db_statistics` mean: NaN-ignoring mean (NaN if nothing is left)."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """DAVIS per-object statistics of a per-frame metric: (Mean, Recall = fraction of frames > 0.5, Decay = mean of
    the first quarter − mean of the last quarter), NaN-ignoring.

    The quarter boundaries are `round(linspace(1, n, 5) + 1e-10) − 1` stored as **uint8**, exactly as the official
    code does: for sequences longer than 256 frames the indices wrap and Decay is wrong, and at exactly 256 frames
    (with NumPy ≥ 2) the last bin is empty and Decay is NaN. Mean and Recall are unaffected. We keep the quirk so
    Decay columns match the official CSV.
    """
    v = np.asarray(per_frame, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = nanmean(v)
    recall = float(np.mean(v > 0.5))  # a NaN frame is "not > 0.5": it counts as a miss, as in the official code
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
    with np.errstate(over="ignore"):  # the uint8 wrap-around is the official behaviour we reproduce
        bins = [v[ids[i] : ids[i + 1] + np.uint8(1)] for i in range(4)]
    decay = nanmean(bins[0]) - nanmean(bins[3]) if bins[0].size and bins[3].size else math.nan
    return mean, recall, decay


# --- DAVIS unsupervised (ReferFormer's Ref-DAVIS17 protocol) -------------------------------------------------


def davis_unsupervised_sequence(
    gt_labels: np.ndarray, pred_labels: np.ndarray, max_proposals: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object J and F frame arrays of one sequence under the DAVIS-2017 *unsupervised* protocol.

    `gt_labels` [T, H, W] is the indexed annotation (k = object k, 255 = void); the number of objects is the max id in
    frame 0 (as `davis.py` counts them). `pred_labels` [T, H, W] is the indexed prediction (1..N proposals). Every
    (proposal, object) pair is scored over all frames with void excluded; proposals are assigned to objects with the
    Hungarian method maximising (mean J + mean F) / 2; a missing proposal counts as an empty mask.
    Returns (J [n_objects, T], F [n_objects, T]).
    """
    gt = np.asarray(gt_labels)
    pred = np.asarray(pred_labels)
    void = gt == 255
    gt = np.where(void, 0, gt)
    n_obj = int(gt[0].max()) if gt.size else 0
    n_prop = int(pred.max()) if pred.size else 0
    if n_prop > max_proposals:
        raise ValueError(f"{n_prop} proposals exceed the DAVIS limit of {max_proposals}")
    n_rows = max(n_prop, n_obj)
    t = gt.shape[0]
    j = np.zeros((n_rows, n_obj, t))
    f = np.zeros((n_rows, n_obj, t))
    for ii in range(n_obj):
        g = gt == ii + 1
        for jj in range(n_rows):
            p = pred == jj + 1
            j[jj, ii] = j_scores(p, g, void)
            f[jj, ii] = f_scores(p, g, void)
    if n_obj == 0:
        return np.zeros((0, t)), np.zeros((0, t))
    rows, cols = linear_sum_assignment(-(j.mean(axis=2) + f.mean(axis=2)) / 2)
    return j[rows, cols], f[rows, cols]


def davis_unsupervised(sequences: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """DAVIS-2017 unsupervised global result: J-Mean = mean over all objects of all sequences of the per-object frame
    mean (NaN-ignoring), F likewise, J&F = (J + F) / 2, plus Recall and Decay (`db_statistics`), ×100.
    `sequences[name] = (gt_labels, pred_labels)`.
    """
    stats: dict[str, list[float]] = {k: [] for k in ("J", "J-Recall", "J-Decay", "F", "F-Recall", "F-Decay")}
    for gt, pred in sequences.values():
        j, f = davis_unsupervised_sequence(gt, pred)
        for name, values in (("J", j), ("F", f)):
            for per_frame in values:
                m, r, d = db_statistics(per_frame)
                stats[name].append(m)
                stats[f"{name}-Recall"].append(r)
                stats[f"{name}-Decay"].append(d)
    out = _jf_row(100 * _mean(stats["J"]), 100 * _mean(stats["F"]))
    for k in ("J-Recall", "J-Decay", "F-Recall", "F-Decay"):
        out[k] = 100 * _mean(stats[k])
    return out


def ref_davis17_referformer(annotator_sets: Sequence[Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> dict[str, float]:
    """Ref-DAVIS17, ReferFormer protocol: the DAVIS unsupervised evaluation run once per annotator set (anno_0..3,
    each a folder of combined indexed predictions against `Annotations_unsupervised`), then the mean of the four
    global results (ReferFormer issue #30).
    """
    rows = [davis_unsupervised(s) for s in annotator_sets]
    return {k: _mean(r[k] for r in rows) for k in rows[0]} if rows else {}
