"""Instrument: UFO's boxes read off its retrieved masks instead of its text boxes, on `pixelworld-boxes` data.

    python -m pixelwise.recipes.ufo.mask_boxes MODEL DATA [--limit N]

Grounding asks "Please segment <phrase>." and takes the tight box of the mask; detection takes each grid answer's
mask as its box. Scored by the benchmark's own scorer (`pixelwise.eval.boxes.evaluate`: Acc@0.5; micro F1 at IoU
0.5) with the text boxes removed from the answers, so the two reports tell apart a model that cannot write where the
object is from one that cannot find it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pixelwise
from pixelwise.core.results import Result
from pixelwise.eval.boxes import evaluate


def masks_only(result: Result) -> Result:
    """The result without its boxes (object boxes and `<box>` text), so the scorer falls back to the masks."""
    return dataclasses.replace(result, answer="", objects=[dataclasses.replace(o, box=None) for o in result.objects])


def mask_box_report(model: str | Path, data: str | Path, limit: int | None = None) -> dict[str, Any]:
    pipe = pixelwise.load(model, device="cpu")

    def predict(item) -> Result:
        s = item.sample
        question = f"Please segment {s['phrase']}." if s["task"] == "grounding" else item.question
        return masks_only(pipe.segment(item.frames[0], question))

    report = evaluate(data, predict, limit=limit)
    report["benchmark"] = "pixelworld-boxes (boxes read off the masks)"
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    report = mask_box_report(args.model, args.data, args.limit)
    print(json.dumps(report["metrics"], indent=2))


if __name__ == "__main__":
    main()
