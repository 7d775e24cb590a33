"""Instrument: UFO's boxes read off its retrieved masks instead of its text boxes, on `pixelworld-boxes` data.

    python -m pixelwise.recipes.ufo.mask_boxes MODEL DATA [--limit N]

Grounding asks "Please segment <phrase>." and takes the tight box of the mask; detection takes each grid answer's
mask as its box. Scored as `pixelwise eval --benchmark pixelworld-boxes` scores text boxes (Acc@0.5; micro F1 at IoU
0.5), so the two tell apart a model that cannot write where the object is from one that cannot find it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import pixelwise
from pixelwise.core.masks import box_iou, mask_to_box
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.eval.boxes import IOU, match


def _mask_boxes(objects) -> list[tuple[float, ...]]:
    ranked = sorted(objects, key=lambda o: -(o.score if o.score is not None else 0.0))
    return [tuple(float(v) for v in mask_to_box(np.asarray(o.masks).any(0))) for o in ranked
            if np.asarray(o.masks).any()]


def mask_box_scores(model: str | Path, data: str | Path, limit: int | None = None) -> dict[str, float]:
    pipe = pixelwise.load(model)
    ds = PixelWorldDataset(data, tasks=["grounding", "detection"])
    hits = grounded = tp = predicted = true = 0
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        it = ds[i]
        s = it.sample
        truth = [tuple(t["boxes"][0]) for t in s["targets"]]
        if s["task"] == "grounding":
            boxes = _mask_boxes(pipe.segment(it.frames[0], f"Please segment {s['phrase']}.").objects)
            grounded += 1
            hits += int(bool(boxes) and box_iou(boxes[0], truth[0]) >= IOU)
        else:
            boxes = _mask_boxes(pipe.segment(it.frames[0], s["question"]).objects)
            tp += match(boxes, truth)
            predicted += len(boxes)
            true += len(truth)
    p, r = tp / max(predicted, 1), tp / max(true, 1)
    return {"grounding_samples": grounded, "grounding_acc50": hits / max(grounded, 1), "detection_precision": p,
            "detection_recall": r, "detection_f1": 2 * p * r / max(p + r, 1e-9), "detection_boxes": predicted,
            "detection_targets": true}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    print(json.dumps(mask_box_scores(args.model, args.data, args.limit), indent=2))


if __name__ == "__main__":
    main()
