"""Boxes from language on PixelWorld images (`pixelworld-boxes`): grounding (one box) and detection (every box).

PixelWorld's box tasks ask in text and answer with boxes on its 0-1000 grid:

* grounding: "Give the bounding box of the large plain shape." -> "A large cyan ring <box>94,297,344,539</box>.";
* detection: "Detect every star." -> one `<box>` per star, or "There is no star in the image." when there is none.

A model answers through `ask(image, question)`. Its boxes, in pixels, are taken in this order of preference: the
`box` of each answer object (UFO: boxes as text, parallel grid decoding), else every `<box>x1,y1,x2,y2</box>` of the
answer text (0-1000 grid, the form PixelWorld trains), else the tight box of each object's mask (a segmentation model
used as a detector). Scores:

* grounding: the first box against the target's (IoU); `Acc@0.5` = share with IoU >= 0.5 (the RefCOCO box-grounding
  protocol), `mIoU`, per expression kind (attr / ordinal / relation ...);
* detection: predictions matched to the targets greedily in the model's order of confidence (object `score` where
  given), each target at most once, a match at IoU >= 0.5; `precision`, `recall` and `F1` over all boxes of all
  images (micro), `exact` = share of images with every target found and nothing else (an image with no target is
  exact when the model returns no box).

`pixelwise eval --benchmark pixelworld-boxes --data DIR --model PATH`, DIR made by
`pixelwise pixelworld generate --out DIR --split test --num 200 --tasks grounding,detection` (images).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import pixelwise
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.masks import box_iou, mask_to_box
from pixelwise.core.results import Result
from pixelwise.data.pixelworld.dataset import PixelWorldDataset

TASKS = ("grounding", "detection")
IOU = 0.5
BOX_GRID = 1000  # PixelWorld's box text grid
_BOX = re.compile(r"<box>\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*</box>")

Box = tuple[float, float, float, float]


def text_boxes(text: str, size: tuple[int, int]) -> list[Box]:
    """Every `<box>` of a text (0-1000 grid) in pixels of an image of `size` (h, w), corners ordered."""
    h, w = size
    out = []
    for m in _BOX.finditer(text):
        x1, y1, x2, y2 = (min(max(int(v), 0), BOX_GRID) for v in m.groups())
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        out.append((x1 * w / BOX_GRID, y1 * h / BOX_GRID, x2 * w / BOX_GRID, y2 * h / BOX_GRID))
    return out


def predicted_boxes(result: Result, size: tuple[int, int]) -> list[Box]:
    """The answer's boxes in the model's order of confidence (see the module docstring for where they come from)."""
    objects = list(result.objects)
    if any(o.box is not None for o in objects):
        ranked = sorted((o for o in objects if o.box is not None),
                        key=lambda o: -(o.score if o.score is not None else 0.0))
        return [tuple(float(v) for v in o.box) for o in ranked]
    found = text_boxes(result.answer or "", size)
    if found:
        return found
    boxes = []
    for o in sorted(objects, key=lambda o: -(o.score if o.score is not None else 0.0)):
        b = mask_to_box(np.asarray(o.masks).any(0)) if np.asarray(o.masks).size else None
        if b is not None:
            boxes.append(tuple(float(v) for v in b))
    return boxes


def match(predicted: Sequence[Box], targets: Sequence[Box], iou: float = IOU) -> int:
    """True positives: each prediction, in order, takes the unmatched target it overlaps most if IoU >= `iou`."""
    free = list(range(len(targets)))
    hits = 0
    for p in predicted:
        if not free:
            break
        best = max(free, key=lambda j: box_iou(p, targets[j]))
        if box_iou(p, targets[best]) >= iou:
            free.remove(best)
            hits += 1
    return hits


def evaluate(data: str | Path, predict: Callable[[Any], Result], limit: int | None = None) -> dict[str, Any]:
    """Run `predict(item)` on every grounding and detection question of a native PixelWorld folder (images) and
    score the boxes."""
    ds = PixelWorldDataset(data, tasks=list(TASKS))
    picks = [i for i in range(len(ds)) if ds.record(i)["num_frames"] == 1]
    if not picks:
        raise PixelwiseError(f"{data}: no image grounding or detection questions "
                             "(generate with --tasks grounding,detection, without --video)")
    picks = picks if limit is None else picks[:limit]
    start = time.perf_counter()
    records = []
    for i in picks:
        item = ds[i]
        s = item.sample
        size = (int(s["height"]), int(s["width"]))
        result = predict(item)
        boxes = predicted_boxes(result, size)
        targets = [tuple(float(v) for v in t["boxes"][0]) for t in s["targets"]]
        rec: dict[str, Any] = {"key": s["id"], "task": s["task"], "kind": (s.get("expression") or {}).get("kind"),
                               "answer": result.answer, "reference": s["answer"],
                               "boxes": [[round(v, 1) for v in b] for b in boxes], "targets": len(targets)}
        if s["task"] == "grounding":
            rec["iou"] = box_iou(boxes[0], targets[0]) if boxes and targets else 0.0
        else:
            rec["hits"] = match(boxes, targets)
        records.append(rec)
    return _report(records, time.perf_counter() - start)


def _grounding(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ious = np.array([r["iou"] for r in rows], dtype=np.float64)
    return {"samples": len(rows), "Acc@0.5": 100 * float(np.mean(ious >= IOU)), "mIoU": 100 * float(ious.mean())}


def _detection(rows: list[dict[str, Any]]) -> dict[str, Any]:
    hits = sum(r["hits"] for r in rows)
    predicted = sum(len(r["boxes"]) for r in rows)
    targets = sum(r["targets"] for r in rows)
    precision = hits / predicted if predicted else (1.0 if not targets else 0.0)
    recall = hits / targets if targets else 1.0
    f1 = 2 * hits / (predicted + targets) if predicted + targets else 1.0  # = 2PR / (P + R)
    exact = [r["hits"] == r["targets"] == len(r["boxes"]) for r in rows]
    return {"samples": len(rows), "F1": 100 * f1, "precision": 100 * precision, "recall": 100 * recall,
            "exact": 100 * float(np.mean(exact)), "boxes_predicted": predicted, "boxes_true": targets}


def _report(records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    grounding = [r for r in records if r["task"] == "grounding"]
    detection = [r for r in records if r["task"] == "detection"]
    if grounding:
        g = _grounding(grounding)
        metrics.update({"Acc@0.5": g["Acc@0.5"], "mIoU": g["mIoU"]})
        metrics["grounding"] = g
        for kind in sorted({r["kind"] for r in grounding if r["kind"]}):
            metrics["grounding"][kind] = _grounding([r for r in grounding if r["kind"] == kind])
    if detection:
        d = _detection(detection)
        metrics["F1"] = d["F1"]
        metrics["detection"] = d
    return {
        "benchmark": "pixelworld-boxes",
        "protocol": "PixelWorld image grounding (first box vs the target: Acc@0.5, mean IoU) and detection (boxes "
                    "matched greedily in order of confidence at IoU >= 0.5: micro precision / recall / F1, share of "
                    "images exactly right); boxes from the answer objects, else the answer's <box> text, else the "
                    "objects' masks",
        "metrics": metrics,
        "samples": len(records),
        "missing": 0,
        "seconds": round(seconds, 3),
        "per_sample": records,
    }


def model_predictor(pipe) -> Callable[[Any], Result]:
    """A pipeline's `ask(image, question)` as the predictor of `evaluate`."""

    def predict(item) -> Result:
        return pipe.ask(item.frames[0], item.question)

    return predict


def run(benchmark: str, data: str | Path, model: str, limit: int | None = None) -> dict[str, Any]:
    """`pixelwise eval --benchmark pixelworld-boxes --data DIR --model PATH`."""
    if benchmark.partition(":")[2]:
        raise PixelwiseError(f"--benchmark {benchmark}: pixelworld-boxes has no variants after ':'")
    return evaluate(data, model_predictor(pixelwise.load(model)), limit=limit)
