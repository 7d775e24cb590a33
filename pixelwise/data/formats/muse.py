"""MUSE (PixelLM): a JSON list of image records with `questions` and, per question, the target instances
(`answers[q]`, each with COCO polygons). One sample per question; one target track per instance, because MUSE
matches predicted and ground-truth instances one-to-one."""

from __future__ import annotations

from pathlib import Path

from pixelwise.core.errors import FormatError
from pixelwise.data.formats.sample import (
    CocoTrack,
    Sample,
    load_json,
    member,
    require,
    validate_coco_segmentation,
)


def _image_name(rec: dict, source: str, where: str) -> str:
    if not isinstance(rec, dict):
        raise FormatError(f"{source}: {where} must be a JSON object, got {type(rec).__name__}")
    if "file_name" in rec:
        return str(rec["file_name"])
    if "coco_url" in rec:
        return str(rec["coco_url"]).rsplit("/", 1)[-1]
    raise FormatError(f"{source}: missing field '{where}.file_name' (or '{where}.coco_url')")


def read_muse(json_path: str | Path, image_dir: str | Path) -> list[Sample]:
    json_path, image_dir = Path(json_path), Path(image_dir)
    src = str(json_path)
    data = load_json(json_path)
    if not isinstance(data, list):
        raise FormatError(f"{json_path}: MUSE annotations must be a JSON list of image records")
    samples = []
    for i, rec in enumerate(data):
        where = f"[{i}]"
        name = _image_name(rec, src, where)
        h = require(rec, "height", src, where, int)
        w = require(rec, "width", src, where, int)
        questions = require(rec, "questions", src, where, list)
        answers = require(rec, "answers", src, where, list)
        if len(answers) != len(questions):
            raise FormatError(f"{src}: {where} has {len(questions)} questions but {len(answers)} answers")
        for q, (question, targets) in enumerate(zip(questions, answers)):
            if not isinstance(targets, list):
                raise FormatError(f"{src}: field '{where}.answers[{q}]' must be a list of instances")
            tracks = []
            for t, inst in enumerate(targets):
                segm = require(inst, "segmentation", src, f"{where}.answers[{q}][{t}]")
                segm_src = f"{src}: field '{where}.answers[{q}][{t}].segmentation'"
                validate_coco_segmentation(segm, (h, w), segm_src)
                tracks.append(CocoTrack(segm, (h, w), segm_src))
            samples.append(
                Sample(
                    key=f"{Path(name).stem}/{q}",
                    text=str(question),
                    frames=[member(image_dir, name, f"{src}: field '{where}.file_name'")],
                    frame_names=[Path(name).stem],
                    size=(h, w),
                    targets=tracks,
                    meta={"image": name, "question_index": q},
                )
            )
    return samples
