"""Open questions about a region of a PixelWorld image, scored by their exact answer (`pixelworld-region`).

A PixelWorld image `region` sample points at one object with a click, a box or a mask and asks an open question whose
answer has one fixed form:

* describe: "Describe <region>." / "What is in <region>?" -> "A large cyan dotted ring." (size, colour, texture
  and shape of the object, in PixelWorld's grammar);
* color: "What color is <region>?" -> "It is cyan.";
* shape: "What shape is <region>?" -> "It is a ring.";
* count: "How many other objects have the same color as <region>?" -> "Two.".

A model answers through `ask(image, question, regions=[prompt])`, the region named `[0]` in the question (the pipeline
convention). A sample is right when its answer equals the reference up to case, spaces and the final period. The
report gives the accuracy (`Acc`, %) overall, per question type and per prompt kind, and for the descriptions the share of the
reference's words the answer contains (`word_recall`), so a wrong description shows how far off it is.

`pixelwise eval --benchmark pixelworld-region --data DIR --model PATH`, DIR made by
`pixelwise pixelworld generate --out DIR --split test --num 200 --tasks region` (images: no `--video`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import pixelwise
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.results import Result
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.pipeline.base import videorefer_question

QTYPES = ("describe", "color", "shape", "count")
PROMPT_KINDS = ("point", "box", "mask")


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding spaces or final period."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().lower()


def word_recall(answer: str, reference: str) -> float:
    """Share of the reference's words found in the answer (both normalised)."""
    ref = normalize(reference).split()
    got = set(normalize(answer).split())
    return sum(w in got for w in ref) / len(ref) if ref else 1.0


def evaluate(data: str | Path, predict: Callable[[Any], Result], limit: int | None = None) -> dict[str, Any]:
    """Run `predict(item)` on every image region question of a native PixelWorld folder and score the answers."""
    ds = PixelWorldDataset(data, tasks=["region"])
    picks = [i for i in range(len(ds)) if ds.record(i)["num_frames"] == 1]
    if not picks:
        raise PixelwiseError(f"{data}: no image region questions (generate with --tasks region, without --video)")
    picks = picks if limit is None else picks[:limit]
    start = time.perf_counter()
    records = []
    for i in picks:
        item = ds[i]
        s = item.sample
        answer = predict(item).answer
        records.append({"key": s["id"], "qtype": s["qtype"], "prompt": s["prompts"][0]["type"],
                        "answer": answer, "reference": s["answer"],
                        "correct": normalize(answer) == normalize(s["answer"]),
                        "word_recall": word_recall(answer, s["answer"])})
    return _report(records, time.perf_counter() - start)


def _report(records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    def accuracy(rows: list[dict[str, Any]]) -> float:
        return 100 * float(np.mean([r["correct"] for r in rows]))

    metrics: dict[str, Any] = {"Acc": accuracy(records)}
    for key, values in (("qtype", QTYPES), ("prompt", PROMPT_KINDS)):
        for v in values:
            sub = [r for r in records if r[key] == v]
            if sub:
                metrics[v] = {"samples": len(sub), "Acc": accuracy(sub)}
    described = [r for r in records if r["qtype"] == "describe"]
    if described:
        metrics["describe"]["word_recall"] = 100 * float(np.mean([r["word_recall"] for r in described]))
    return {
        "benchmark": "pixelworld-region",
        "protocol": "PixelWorld image region questions (open answers of one fixed form): exact match after "
                    "normalising case, spaces and the final period; the region is [0], prompted as in the sample",
        "metrics": metrics,
        "samples": len(records),
        "missing": 0,
        "seconds": round(seconds, 3),
        "per_sample": records,
    }


def model_predictor(pipe) -> Callable[[Any], Result]:
    """A pipeline's `ask(image, question, regions=[prompt])` as the predictor of `evaluate`."""
    if not hasattr(pipe, "ask"):
        raise PixelwiseError(f"{type(pipe).__name__} takes no region prompts (no ask method); pixelworld-region "
                             "needs a model that answers about a clicked, boxed or masked region")

    def predict(item) -> Result:
        question, _ = videorefer_question(item.question, len(item.prompts))
        return pipe.ask(item.frames[0], question, regions=list(item.prompts))

    return predict


def run(benchmark: str, data: str | Path, model: str, limit: int | None = None) -> dict[str, Any]:
    """`pixelwise eval --benchmark pixelworld-region --data DIR --model PATH`."""
    if benchmark.partition(":")[2]:
        raise PixelwiseError(f"--benchmark {benchmark}: pixelworld-region has no variants after ':'")
    return evaluate(data, model_predictor(pixelwise.load(model)), limit=limit)
