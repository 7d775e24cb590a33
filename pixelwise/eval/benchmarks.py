"""The benchmark registry: for each name, how to read it, where predictions live, how one sample is scored and
which protocol aggregates the scores.

Names accept an optional split after a colon: `refcoco:testA`, `refcocog:test`, `muse:test_less`,
`pixelqa:box`. `--data` is the dataset root in its official layout:

| name | `--data` | predictions (`--pred`) |
|---|---|---|
| mevis, revos, ref-sav, ref-youtube-vos, ref-davis17 | folder with the meta JSON (see `rvos.LAYOUTS`) | `<video>/<exp_id>/<frame>.png` (ref-sav: or Sa2VA JSON file) |
| ref-davis17-referformer | as ref-davis17 | `anno_<k>/<video>/<frame>.png` indexed |
| groundmore | folder with `test_v2.json` and `<vid>/images` | `<video>/<qid>/<frame>.png` (20 sampled frames) |
| refcoco, refcoco+, refcocog | refer root (`refcoco/refs(unc).p`, `images/mscoco/images/train2014`) | `<image_id>/<sent_id>.json` |
| reasonseg | the split folder (`ReasonSeg/val`) | `<name>.json` |
| muse | folder with `muse_<split>.json` and `images/` | `<image>/<q>.json` |
| videorefer-bench-q, pixelqa | folder with `VideoRefer-Bench-Q.json` (or `questions.json`) and the video frame folders | `<id>.json` |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelwise.core.errors import PixelwiseError
from pixelwise.data.formats.layouts import NAMES, parse_name, reader
from pixelwise.data.formats.sample import Sample
from pixelwise.eval import protocols


@dataclass(frozen=True)
class Benchmark:
    """`kind` selects the prediction layout and per-sample scorer: "video" (PNG folders, DAVIS J/F), "image"
    (result JSON, cIoU/gIoU), "multi" (MUSE matching), "qa" (multiple choice, plus PixelQA masks)."""

    name: str  # as the user wrote it (shown in reports)
    kind: str
    read: Callable[[Path], list[Sample]]
    aggregate: Callable[[list[dict[str, Any]]], dict[str, Any]]
    protocol: str
    canonical: str = ""  # registry name, e.g. "pixelqa" for "PixelQA:box"


def _video_agg(fn: Callable) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def agg(records: list[dict[str, Any]]) -> dict[str, Any]:
        return fn([protocols.ExpressionScore(r["key"], r["J"], r["F"], r.get("A"), r.get("R"), r.get("type_id"),
                                             r.get("q_type")) for r in records])

    return agg


def _image_agg(records: list[dict[str, Any]]) -> dict[str, Any]:
    total_i = sum(r["I"] for r in records)
    total_u = sum(r["U"] for r in records)
    ious = [r["IoU"] for r in records]
    import math

    return {"cIoU": 100 * (total_i / total_u if total_u else 0.0),
            "gIoU": 100 * (math.fsum(ious) / len(ious) if ious else 0.0)}


def _muse_agg(records: list[dict[str, Any]]) -> dict[str, Any]:
    per_image: dict[str, list[float]] = {}
    for r in records:  # image-level gIoU denominator: max(#pred, #gt) over the whole image
        acc = per_image.setdefault(r["image"], [0.0, 0, 0])
        acc[0] += r["iou_sum"]
        acc[1] += r["n_pred"]
        acc[2] += r["n_gt"]
    weight = sum(max(a[1], a[2]) for a in per_image.values())
    total_i = sum(r["I"] for r in records)
    total_u = sum(r["U"] for r in records)
    out = {"cIoU": 100 * (total_i / total_u if total_u else 0.0),
           "gIoU": 100 * (sum(a[0] for a in per_image.values() if max(a[1], a[2])) / weight if weight else 0.0)}
    # pixelwise's addition for data with zero-target questions (real MUSE has none; PixelWorld exports them): the
    # share answered with no mask (no object, or only empty masks); questions without a prediction are left out.
    # Absent when there is no such question.
    empty = [r for r in records if r["n_gt"] == 0 and not r.get("missing")]
    if empty:
        out["no_target_empty"] = 100 * sum(r.get("n_pred_nonempty", r["n_pred"]) == 0 for r in empty) / len(empty)
    return out


def _qa_agg(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"Acc": 100 * sum(r["correct"] for r in records) / len(records) if records else 0.0}
    for t in sorted({r["q_type"] for r in records if r.get("q_type")}):
        sel = [r["correct"] for r in records if r.get("q_type") == t]
        out[t] = 100 * sum(sel) / len(sel)
    objs = [o for r in records for o in r.get("objects", [])]
    if objs:  # PixelQA: J, F = mean over all objects of all questions
        j = sum(o["J"] for o in objs) / len(objs)
        f = sum(o["F"] for o in objs) / len(objs)
        out.update({"J": 100 * j, "F": 100 * f, "J&F": 100 * (j + f) / 2})
    return out


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for `name` (case-insensitive, optional `:split`): its reader (`data.formats.layouts`)
    and how it is scored."""
    base, _ = parse_name(name)
    kind, aggregate, protocol = _scoring(name, base)
    return Benchmark(name, kind, reader(name), aggregate, protocol, canonical=base)


def _scoring(name: str, base: str) -> tuple[str, Callable[[list[dict[str, Any]]], dict[str, Any]], str]:
    """(prediction layout / per-sample scorer, aggregation, protocol description) of a benchmark."""
    if base in ("mevis", "ref-youtube-vos"):
        return "video", _video_agg(protocols.mevis), "MeViS: mean over expressions of frame-mean J and F"
    if base == "revos":
        return ("video", _video_agg(protocols.revos),
                "ReVOS: per-expression rounding, referring/reasoning macro mean; A/R on binary masks")
    if base == "ref-sav":
        return "video", _video_agg(protocols.ref_sav), "Ref-SAV: per-expression rounding, long/short macro mean"
    if base == "ref-davis17":
        return ("video", _video_agg(protocols.ref_davis17_visa),
                "Ref-DAVIS17 VISA/Sa2VA/UniPixel protocol: per expression, rounded to 2 decimals")
    if base == "ref-davis17-referformer":
        return ("davis-unsupervised", lambda recs: {},
                "Ref-DAVIS17 ReferFormer protocol: DAVIS unsupervised per annotator set, mean of 4")
    if base == "groundmore":
        return ("video", _video_agg(protocols.groundmore),
                "GroundMoRe: 20 sampled frames, empty GT outside the action window, per q_type")
    if base in ("refcoco", "refcoco+", "refcocog"):
        return "image", _image_agg, "LISA: cIoU = ΣI/ΣU, gIoU = mean per-sentence IoU"
    if base == "reasonseg":
        return "image", _image_agg, "LISA: first query per image, ignore pixels excluded; cIoU / gIoU"
    if base == "muse":
        return ("multi", _muse_agg,
                "MUSE (PixelLM): Hungarian matching on mask IoU (deterministic); per-image gIoU, cIoU")
    if base == "videorefer-bench-q":
        return "qa", _qa_agg, "VideoRefer-Bench-Q: micro accuracy, VideoRefer answer parser"
    if base == "pixelqa":
        return "qa", _qa_agg, "PixelQA (UniPixel): accuracy with UniPixel parser; volume J and pixel-F1 F"
    raise PixelwiseError(f"unknown benchmark '{name}'; known: {', '.join(NAMES)}")
