"""Per-sample metrics with the exact semantics of the official benchmark scorers.

Every function takes boolean masks (anything non-zero counts as foreground, like the official `astype(bool)`),
and returns plain floats in [0, 1]. Benchmarks report these ×100 after their own aggregation
(see `pixelwise.eval.protocols`).

Exactness matters more than elegance here: a number printed by pixelwise must equal, to the last digit, the one the
official script prints for the same predictions. So the DAVIS J and F below reproduce the reference arithmetic
step by step (same boundary map, same exact disk, same float64 divisions in the same order), vectorised over frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from pixelwise.core.errors import MaskError
from pixelwise.core.masks import box_iou

__all__ = [
    "accuracy",
    "boundary_map",
    "box_accuracy",
    "box_iou",
    "ciou_giou",
    "f_score",
    "f_scores",
    "j_score",
    "j_scores",
    "jf_video",
    "match_targets",
    "mc_accuracy",
    "muse_ciou_giou",
    "parse_pixelqa_choice",
    "parse_videorefer_choice",
    "pixelqa_volume_jf",
    "robustness",
]


# ---------------------------------------------------------------------------------------------------------------
# DAVIS region similarity J and boundary accuracy F


def _stack(masks: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise MaskError(f"{what}: expected a mask [H, W] or a stack [T, H, W], got shape {m.shape}")
    return m.astype(bool, copy=False)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = _stack(pred, "prediction"), _stack(gt, "ground truth")
    if p.shape != g.shape:
        raise MaskError(f"prediction {p.shape[1:]} x {p.shape[0]} frames does not match ground truth "
                        f"{g.shape[1:]} x {g.shape[0]} frames; evaluate at the ground-truth resolution")
    return p, g


_CHUNK_PIXELS = 1 << 24  # frames are processed in chunks of ~16 M pixels to bound temporary memory


def _chunks(num_frames: int, height: int, width: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // max(1, height * width))
    return [slice(i, i + step) for i in range(0, num_frames, step)]


def j_scores(preds: np.ndarray, gts: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Per-frame Jaccard of two stacks [T, H, W] (float64 [T]); a frame whose union is empty scores 1.

    `void` pixels (DAVIS label 255) are excluded from intersection and union.
    """
    p, g = _pair(preds, gts)
    v = None if void is None else _stack(void, "void")
    inter = np.empty(len(p), dtype=np.int64)
    union = np.empty(len(p), dtype=np.int64)
    for c in _chunks(*p.shape):
        inter_map, union_map = p[c] & g[c], p[c] | g[c]
        if v is not None:
            inter_map &= ~v[c]
            union_map &= ~v[c]
        inter[c] = np.count_nonzero(inter_map, axis=(1, 2))
        union[c] = np.count_nonzero(union_map, axis=(1, 2))
    j = np.ones(len(p), dtype=np.float64)
    nz = union > 0
    j[nz] = inter[nz] / union[nz]  # int64 / int64 -> correctly rounded float64, as in the reference
    return j


def j_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS region similarity J of one frame: |P∩G| / |P∪G|, and 1 when both masks are empty."""
    p, g = _pair(pred, gt)
    if len(p) != 1:
        raise MaskError(f"j_score takes one frame, got {len(p)}; use j_scores or jf_video for a video")
    return float(j_scores(p, g)[0])


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """1-pixel boundaries of a mask stack [T, H, W], as DAVIS' `seg2bmap` draws them.

    A pixel is on the boundary when its value differs from its right, lower or lower-right neighbour (pixels past
    the image edge count as background for this comparison). The last row only compares to the right, the last
    column only downwards, and the bottom-right pixel is never a boundary — so the image border itself is not a
    boundary: an all-ones mask has none. This half-pixel offset is what the official code does; we keep it exactly.
    """
    s = _stack(masks, "mask")
    east = np.zeros_like(s)
    south = np.zeros_like(s)
    diag = np.zeros_like(s)
    east[:, :, :-1] = s[:, :, 1:]
    south[:, :-1, :] = s[:, 1:, :]
    diag[:, :-1, :-1] = s[:, 1:, 1:]
    b = (s ^ east) | (s ^ south) | (s ^ diag)
    b[:, -1, :] = s[:, -1, :] ^ east[:, -1, :]
    b[:, :, -1] = s[:, :, -1] ^ south[:, :, -1]
    b[:, -1, -1] = False
    return b


def tolerance_radius(height: int, width: int, bound_th: float = 0.008) -> float:
    """Boundary tolerance in pixels: `bound_th` itself if ≥ 1, else ceil(bound_th × image diagonal).

    480×854 → 8, 720×1280 → 12. Computed with the same float64 operations as the reference so the ceil never
    lands on the other side of an integer.
    """
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: float) -> np.ndarray:
    """Exact disk footprint, uint8: grid `arange(-r, r + 1)` squared, kept where x² + y² ≤ r².

    The same definition as scikit-image's `morphology.disk` (default `strict_radius=True`), written here so we do not
    depend on scikit-image for one array.
    """
    axis = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(axis, axis)
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def _dilate(boundary: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(boundary.view(np.uint8), kernel).view(bool)


def f_scores(
    preds: np.ndarray, gts: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> np.ndarray:
    """Per-frame DAVIS boundary F of two stacks [T, H, W] (float64 [T]).

    Boundary pixels of each mask are matched to the other mask's boundary dilated by an exact disk of radius
    `tolerance_radius`. Conventions for empty boundaries are the official ones: none on either side → F = 1;
    none predicted but some in GT → P = 1, R = 0 → F = 0; the reverse → F = 0.
    """
    p, g = _pair(preds, gts)
    v = None if void is None else _stack(void, "void")
    t, h, w = p.shape
    kernel = disk(tolerance_radius(h, w, bound_th))
    out = np.empty(t, dtype=np.float64)
    for c in _chunks(t, h, w):
        pc, gc = (p[c], g[c]) if v is None else (p[c] & ~v[c], g[c] & ~v[c])
        pb, gb = boundary_map(pc), boundary_map(gc)
        n_fg = np.count_nonzero(pb, axis=(1, 2))
        n_gt = np.count_nonzero(gb, axis=(1, 2))
        for i in range(len(pb)):
            if n_fg[i] == 0 or n_gt[i] == 0:
                precision = 1.0 if n_fg[i] == 0 else 0.0
                recall = 1.0 if n_gt[i] == 0 else 0.0
            else:
                # Only the matched counts need the dilations; boundaries are sparse, so index them instead of
                # AND-ing full frames.
                precision = np.count_nonzero(_dilate(gb[i], kernel)[pb[i]]) / float(n_fg[i])
                recall = np.count_nonzero(_dilate(pb[i], kernel)[gb[i]]) / float(n_gt[i])
            out[c.start + i] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out


def f_score(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure of one frame (see `f_scores`); empty/empty = 1."""
    p, g = _pair(pred, gt)
    if len(p) != 1:
        raise MaskError(f"f_score takes one frame, got {len(p)}; use f_scores or jf_video for a video")
    return float(f_scores(p, g, bound_th=bound_th)[0])


def jf_video(preds: np.ndarray, gts: np.ndarray, bound_th: float = 0.008) -> dict[str, object]:
    """J and F of one expression/object over a video, MeViS/ReVOS style.

    Per-frame J and F are averaged over *all* frames — frames where the target is absent and the prediction is empty
    score 1 — and `J&F` is their mean. Returns fractions (not ×100) plus the per-frame arrays.
    """
    j = j_scores(preds, gts)
    f = f_scores(preds, gts, bound_th=bound_th)
    jm, fm = float(np.mean(j)), float(np.mean(f))
    return {"J": jm, "F": fm, "J&F": (jm + fm) / 2, "J_frames": j, "F_frames": f}


# ---------------------------------------------------------------------------------------------------------------
# LISA-style cIoU / gIoU (RefCOCO family, ReasonSeg) and MUSE multi-target matching


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """Foreground intersection and union pixel counts, with `ignore` pixels excluded from both."""
    p, g = _pair(pred, gt)
    if ignore is not None:
        keep = ~_stack(ignore, "ignore mask")
        p, g = p & keep, g & keep
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def ciou_giou(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    ignore_masks: Sequence[np.ndarray | None] | None = None,
    lisa_epsilon: bool = False,
) -> dict[str, float]:
    """cIoU = ΣI / ΣU over all pairs; gIoU = mean over pairs of I/U, where an empty union scores 1.

    One pair per referring sentence (RefCOCO) or query (ReasonSeg). `ignore_masks[i]` marks pixels (ReasonSeg's
    "ignore" polygons, label 255) that count neither in I nor in U. LISA adds epsilons (I/(U+1e-5) per pair,
    ΣI/(ΣU+1e-10), Σ/(N+1e-5)) and accumulates in float32; we use the exact ratios, which agree with LISA to
    ~1e-8 on ordinary masks (more on 1-pixel masks or a handful of pairs); `lisa_epsilon=True` adds LISA's
    epsilons (in float64). With no union at all, cIoU is 0 (as LISA's 0/1e-10).
    """
    if len(preds) != len(gts):
        raise MaskError(f"{len(preds)} predictions for {len(gts)} ground-truth masks")
    if ignore_masks is not None and len(ignore_masks) != len(gts):
        raise MaskError(f"{len(ignore_masks)} ignore masks for {len(gts)} ground-truth masks")
    total_i = total_u = 0
    ious = []
    for k, (p, g) in enumerate(zip(preds, gts)):
        i, u = intersection_union(p, g, None if ignore_masks is None else ignore_masks[k])
        total_i += i
        total_u += u
        if lisa_epsilon:
            ious.append(i / (u + 1e-5) + (1.0 if u == 0 else 0.0))
        else:
            ious.append(1.0 if u == 0 else i / u)
    if lisa_epsilon:
        ciou, giou = total_i / (total_u + 1e-10), math.fsum(ious) / (len(ious) + 1e-5)
    else:
        ciou = total_i / total_u if total_u else 0.0
        giou = math.fsum(ious) / len(ious) if ious else 0.0
    return {
        "cIoU": ciou,
        "gIoU": giou,
        "intersection": total_i,
        "union": total_u,
        "pairs": len(ious),
    }


@dataclass(frozen=True)
class Matching:
    """Result of `match_targets`: (pred index, gt index) pairs plus the leftovers on either side."""

    pairs: list[tuple[int, int]]
    unmatched_preds: list[int]
    unmatched_gts: list[int]


def match_targets(preds: np.ndarray, gts: np.ndarray) -> Matching:
    """One-to-one matching of predicted to ground-truth instance masks, maximising total mask IoU (Hungarian).

    PixelLM's MUSE evaluator matches on BCE + Dice over 12,544 *random* points (unseeded), so its pairing can change
    from run to run. We match on exact mask IoU instead: deterministic, and it picks the same pairs whenever the
    right pairing is clear. Ties break by scipy's `linear_sum_assignment` order (lowest indices first).
    """
    if len(preds) == 0 or len(gts) == 0:  # zero-target questions and empty answers: nothing to pair
        return Matching([], list(range(len(preds))), list(range(len(gts))))
    p = np.asarray(preds, dtype=bool).reshape(len(preds), -1)
    g = np.asarray(gts, dtype=bool).reshape(len(gts), -1)
    if p.shape[1] != g.shape[1]:
        raise MaskError("predicted and ground-truth instance masks have different sizes")
    pf, gf = p.astype(np.float64), g.astype(np.float64)
    inter = pf @ gf.T
    union = pf.sum(1)[:, None] + gf.sum(1)[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols)]
    return Matching(
        pairs,
        [i for i in range(len(p)) if i not in set(rows.tolist())],
        [j for j in range(len(g)) if j not in set(cols.tolist())],
    )


def muse_ciou_giou(images: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> dict[str, float]:
    """MUSE gIoU / cIoU. `images[i]` lists, per question, (pred masks [P, H, W], gt masks [G, H, W]).

    Per question the masks are matched (`match_targets`); every matched pair, every unmatched GT (against an empty
    prediction, IoU 0) and every unmatched prediction (against an empty GT) is one pair; a pair with empty union
    scores 1. Per image, gIoU is Σ pair IoU / max(#pred masks, #gt masks) in the image, and the image weighs that max
    in the dataset mean; cIoU = ΣI / ΣU. Unlike PixelLM we threshold unmatched predictions before scoring them (the
    original passes raw logits, which usually makes a hallucinated mask cost nothing — see docs/benchmarks.md).
    """
    total_i = total_u = 0
    iou_sum = 0.0
    weight = 0
    for questions in images:
        n_pred = n_gt = 0
        img_iou = 0.0
        for pred, gt in questions:
            pred = np.asarray(pred, dtype=bool)
            gt = np.asarray(gt, dtype=bool)
            n_pred += len(pred)
            n_gt += len(gt)
            m = match_targets(pred, gt)
            pairs = [(pred[a], gt[b]) for a, b in m.pairs]
            pairs += [(np.zeros_like(gt[b]), gt[b]) for b in m.unmatched_gts]
            pairs += [(pred[a], np.zeros_like(pred[a])) for a in m.unmatched_preds]
            for pm, gm in pairs:
                i, u = intersection_union(pm, gm)
                total_i += i
                total_u += u
                img_iou += 1.0 if u == 0 else i / u
        n = max(n_pred, n_gt)
        if n:
            iou_sum += img_iou
            weight += n
    return {
        "cIoU": total_i / total_u if total_u else 0.0,
        "gIoU": iou_sum / weight if weight else 0.0,
        "intersection": total_i,
        "union": total_u,
        "iou_sum": iou_sum,
        "weight": weight,
    }


# ---------------------------------------------------------------------------------------------------------------
# ReVOS accuracy and robustness


def accuracy(preds: np.ndarray, gts: np.ndarray) -> float:
    """ReVOS/Ref-SAV "A": mean over frames of the fraction of pixels where prediction equals GT.

    Defined here on binary (0/1) masks. The public ReVOS script compares the raw uint8 PNG values, so a prediction
    saved as 0/255 never equals a GT of 1 on foreground pixels; we compare binarised masks, which is what VISA's
    numbers would be with 0/1 PNGs.
    """
    p, g = _pair(preds, gts)
    per_frame = np.count_nonzero(p == g, axis=(1, 2)) / float(p.shape[1] * p.shape[2])
    return float(np.mean(per_frame))


def robustness(preds: np.ndarray, gts: np.ndarray, foregrounds: np.ndarray) -> float:
    """ReVOS robustness R (from R²-VOS): mean over frames of max(1 − FP / (|foreground| + 1e-6), 0).

    FP counts predicted pixels outside the target; `foregrounds` is the union of *all* annotated objects of the video
    on that frame. On binary masks this is the intended measure. The public script does the arithmetic on raw
    uint8 values: with 0/255 predictions every false positive counts 255 times (R collapses to ~0), and overlapping
    GT instances (value 2) wrap `1 − gt` to 255 — neither happens here.
    """
    p, g = _pair(preds, gts)
    fg = _stack(foregrounds, "foreground")
    if fg.shape != p.shape:
        raise MaskError(f"foreground masks {fg.shape} do not match predictions {p.shape}")
    neg = np.count_nonzero(p & ~g, axis=(1, 2)).astype(np.float64)
    pos = np.count_nonzero(fg, axis=(1, 2)).astype(np.float64)
    r = np.maximum(1 - neg / (pos + 1e-6), 0)
    return float(np.mean(r))


# ---------------------------------------------------------------------------------------------------------------
# PixelQA segmentation (volume-level J and pixel F1)


def pixelqa_volume_jf(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """UniPixel's PixelQA J and F for one object over its sampled frames [T, H, W] — *volume-level*.

    J = |P∩G| / (|P∪G| + 1e-6) over the whole volume; F is the pixel F1 2pr / (p + r + 1e-6) with
    p = tp / (tp + fp + 1e-6), r = tp / (tp + fn + 1e-6) — not the DAVIS boundary F. Both masks empty gives 0, not 1.
    """
    p, g = _pair(pred, gt)
    tp = float(np.count_nonzero(p & g))
    fp = float(np.count_nonzero(p & ~g))
    fn = float(np.count_nonzero(~p & g))
    j = tp / (tp + fp + fn + 1e-6)
    prec = tp / (tp + fp + 1e-6)
    rec = tp / (tp + fn + 1e-6)
    f = 2 * prec * rec / (prec + rec + 1e-6)
    return {"J": j, "F": f, "J&F": (j + f) / 2}


# ---------------------------------------------------------------------------------------------------------------
# Boxes (RefCOCO REC accuracy)


def box_accuracy(
    preds: Sequence[Sequence[float] | None], gts: Sequence[Sequence[float]], threshold: float = 0.5
) -> float:
    """RefCOCO REC accuracy (Acc@0.5): fraction of expressions whose predicted box has IoU ≥ threshold with GT.

    A missing prediction (None) is a miss.
    """
    if len(preds) != len(gts):
        raise MaskError(f"{len(preds)} predicted boxes for {len(gts)} ground-truth boxes")
    if not gts:
        return 0.0
    hits = sum(1 for p, g in zip(preds, gts) if p is not None and box_iou(p, g) >= threshold)
    return hits / len(gts)


# ---------------------------------------------------------------------------------------------------------------
# Multiple-choice answers (VideoRefer-Bench-Q, PixelQA)

_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_CLOSE_LETTER = re.compile(r"([A-Z])\)")


def parse_videorefer_choice(text: str) -> str:
    """The option letter VideoRefer-Bench-Q's scorer reads from a model response.

    First "(X)" in the text, else the first "X)", else the first character with "." removed. The official script
    crashes on an empty response; we return "" (always wrong). A leading space is kept, as there (scored " ").
    """
    m = _PAREN_LETTER.search(text) or _CLOSE_LETTER.search(text)
    if m:
        return m.group(1)
    rest = text.replace(".", "")
    return rest[0] if rest else ""


def parse_pixelqa_choice(text: str, letters: Sequence[str] = ("a", "b", "c", "d")) -> str | None:
    """The option letter UniPixel's PixelQA scorer reads: first space-separated token, lower-cased, with "(", ")"
    and "." removed, cut to its first character if longer; None ("failed") unless it is one of `letters`.

    UniPixel prompts end with "The best option is (" so answers start with the letter; "Answer: C" reads as "a".
    """
    tokens = text.split(" ")
    token = tokens[0].lower() if tokens else ""
    for ch in "().":
        token = token.replace(ch, "")
    if len(token) != 1:
        token = token[:1]
    return token if token in {x.lower() for x in letters} else None


def videorefer_answer_letter(answer: str) -> str:
    """The letter in a ground-truth "Answer" such as "(A) A helmet"."""
    m = _PAREN_LETTER.search(answer)
    if not m:
        raise ValueError(f"answer {answer!r} has no '(X)' option letter")
    return m.group(1)


def mc_accuracy(preds: Sequence[str | None], gts: Sequence[str], types: Sequence[str] | None = None) -> dict[str, float]:
    """Multiple-choice accuracy, case-insensitive, overall (micro: over all questions) and per question type.

    `preds` are parsed letters (None = unparseable, counted wrong). VideoRefer's "Average" row is this micro mean,
    not the mean of the per-type accuracies.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} answers for {len(gts)} questions")
    correct = [p is not None and p.lower() == g.lower() for p, g in zip(preds, gts)]
    out: dict[str, float] = {"overall": sum(correct) / len(correct) if correct else 0.0}
    if types is not None:
        for t in sorted(set(types)):
            sel = [c for c, tt in zip(correct, types) if tt == t]
            out[t] = sum(sel) / len(sel)
    return out
