"""Score image/clip edits against PixelWorld's exact targets.

A PixelWorld `editing` sample holds the request ("Remove the red circle."), the source scene and the scene after the
edit; both are re-rendered here, so the reference is exact (no video compression). A model edits the sample's
media (`predict(sample) -> Result` with `extras["edited_frames"]`, uint8 [T, H, W, 3]); per sample:
* `psnr`: PSNR (dB) of the edited frames against the exact target over all pixels and frames (capped at 100 dB:
  identical frames score 100);
* `masked_psnr`: the same over the *edit region* only (pixels where the exact source and target renders differ);
* `masked_iou`: IoU between the region the model changed (|edited - source| > `threshold` on any channel) and the
  edit region — did it change what should change, and only that;
* `exact`: the edited frames equal the target exactly;
* `routed`: the model's instruction names the sample's op (remove / recolor / move / add).

Aggregates: means over samples (a sample without edited frames counts as "no edit": the source frames are scored),
plus `identity_psnr` / `identity_masked_psnr`, the scores of returning the source unchanged, as the floor to beat.
`pixelwise eval --benchmark pixelworld-editing --data DIR --model PATH` runs this with the scene graph handed to the
model (exact re-rendering back-end); `pixelworld-editing:pixels` withholds it (mask-guided OpenCV editing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import pixelwise
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.results import Result
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene

PSNR_CAP = 100.0
DEFAULT_THRESHOLD = 12  # gray levels: above MP4 noise (~2 on average), below any real edit of a PixelWorld object


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 arrays [..., H, W, 3] (optionally over a bool [..., H, W] region), capped."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if region is not None:
        if not region.any():
            return PSNR_CAP
        d = d[region]
    mse = float(np.mean(d * d)) if d.size else 0.0
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def changed(a: np.ndarray, b: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > threshold).any(-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def score_edit(source: np.ndarray, target: np.ndarray, edit_region: np.ndarray, edited: np.ndarray | None,
               threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    pred = source if edited is None else edited
    if pred.shape != target.shape:
        raise PixelwiseError(f"edited frames are {pred.shape}, the target {target.shape}")
    return {"psnr": psnr(pred, target), "masked_psnr": psnr(pred, target, edit_region),
            "masked_iou": iou(changed(pred, source, threshold), edit_region),
            "exact": bool(np.array_equal(pred, target)), "missing": edited is None,
            "identity_psnr": psnr(source, target), "identity_masked_psnr": psnr(source, target, edit_region)}


def evaluate(data: str | Path, predict: Callable[[Any, bool], Result], with_scene: bool = True,
             limit: int | None = None, threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Run `predict(item, with_scene)` on every editing sample of a native PixelWorld folder and score it."""

    ds = PixelWorldDataset(data, tasks=["editing"])
    if len(ds) == 0:
        raise PixelwiseError(f"{data}: no editing samples (generate with --tasks editing)")
    n = len(ds) if limit is None else min(limit, len(ds))
    start = time.perf_counter()
    records = []
    for i in range(n):
        item = ds[i]
        s = item.sample
        src_exact, _, _ = render(Scene.from_json(s["scene"]))
        target, _, _ = render(Scene.from_json(s["target_scene"]))
        region = changed(src_exact, target, 0)
        result = predict(item, with_scene)
        edited = result.extras.get("edited_frames")
        rec = score_edit(item.frames, target, region, None if edited is None else np.asarray(edited, np.uint8),
                         threshold)
        ins = result.extras.get("instruction") or {}
        rec.update(key=s["id"], op=s["edit"]["op"], media="clip" if s["num_frames"] > 1 else "image",
                   routed=ins.get("op") == s["edit"]["op"], method=result.extras.get("edit_method"),
                   answer=result.answer)
        records.append(rec)
    return _report("pixelworld-editing" + ("" if with_scene else ":pixels"), records, time.perf_counter() - start,
                   threshold)


def _mean(records: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([float(r[key]) for r in records])) if records else float("nan")


def _report(name: str, records: list[dict[str, Any]], seconds: float, threshold: int) -> dict[str, Any]:
    keys = ("psnr", "masked_psnr", "masked_iou", "exact", "routed", "identity_psnr", "identity_masked_psnr")
    metrics: dict[str, Any] = {k: _mean(records, k) for k in keys}
    metrics["masked_iou"] *= 100
    metrics["exact"] *= 100
    metrics["routed"] *= 100
    for group in ("image", "clip"):
        sub = [r for r in records if r["media"] == group]
        if sub:
            metrics[group] = {"samples": len(sub), "psnr": _mean(sub, "psnr"), "masked_psnr": _mean(sub, "masked_psnr"),
                              "masked_iou": 100 * _mean(sub, "masked_iou"), "exact": 100 * _mean(sub, "exact")}
    for op in ("remove", "recolor", "move", "add"):
        sub = [r for r in records if r["op"] == op]
        if sub:
            metrics[op] = {"samples": len(sub), "psnr": _mean(sub, "psnr"), "masked_iou": 100 * _mean(sub, "masked_iou"),
                           "routed": 100 * _mean(sub, "routed")}
    return {
        "benchmark": name,
        "protocol": f"PixelWorld exact re-rendered targets; PSNR capped at {PSNR_CAP:g} dB; changed-pixel threshold "
                    f"{threshold}; masked = pixels where the exact source and target differ",
        "metrics": metrics,
        "samples": len(records),
        "missing": sum(1 for r in records if r["missing"]),
        "seconds": round(seconds, 3),
        "per_sample": [{k: v for k, v in r.items() if k != "missing"} for r in records],
    }


def model_predictor(pipe) -> Callable[[Any, bool], Result]:
    """A pipeline with `edit(frames, request, scene=...)` (VITRON) as the predictor of `evaluate`."""
    if not hasattr(pipe, "edit"):
        raise PixelwiseError(f"{type(pipe).__name__} cannot edit media (no edit method); pixelworld-editing needs a "
                             "model with editing back-ends, e.g. VITRON")

    def predict(item, with_scene: bool) -> Result:
        frames = item.frames
        return pipe.edit(frames, item.question, num_frames=min(16, frames.shape[0]),
                         scene=item.sample["scene"] if with_scene else None)

    return predict


def run(benchmark: str, data: str | Path, model: str, limit: int | None = None) -> dict[str, Any]:
    """`pixelwise eval --benchmark pixelworld-editing[:pixels] --data DIR --model PATH`."""

    mode = benchmark.partition(":")[2] or "scene"
    if mode not in ("scene", "pixels"):
        raise PixelwiseError(f"--benchmark {benchmark}: the mode after ':' must be 'scene' or 'pixels'")
    return evaluate(data, model_predictor(pixelwise.load(model)), with_scene=mode == "scene", limit=limit)
