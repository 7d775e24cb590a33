"""Exports: every public layout reads back through pixelwise's own benchmark readers with masks identical to the
native ones, and every RLE decodes with pycocotools itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from pixelwise.core.errors import ConfigError
from pixelwise.data.formats import muse, reasonseg, refcoco, rvos, videorefer
from pixelwise.data.pixelworld import export, native


def _by_id(root):
    return {s["id"]: s for s in native.load_samples(root)}


def _coco_decode(rle):
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_refcoco_round_trip(image_dir, tmp_path):
    dest = export.export(image_dir, "refcoco", tmp_path / "refcoco")
    samples = _by_id(image_dir)
    read = refcoco.read_refcoco(dest, "refcoco", split="train")
    expected = [s for s in samples.values() if s["task"] in ("referring", "grounding")]
    assert len(read) == len(expected) > 0
    for r in read:
        s = samples[Path(r.frames[0]).stem.removeprefix("pixelworld_")]
        assert r.text == s["phrase"]
        assert np.array_equal(r.gt_union(), native.target_masks(s)[0])
        x1, y1, x2, y2 = s["targets"][0]["boxes"][0]
        assert tuple(r.meta["box"]) == (x1, y1, x2, y2)
    inst = json.loads((dest / "refcoco" / "instances.json").read_text())
    for ann in inst["annotations"]:
        assert _coco_decode(ann["segmentation"][0]).sum() == ann["area"]


def test_reasonseg_round_trip_polygons_rasterise_exactly(image_dir, tmp_path):
    dest = export.export(image_dir, "reasonseg", tmp_path / "rs")
    samples = _by_id(image_dir)
    read = reasonseg.read_reasonseg(dest / "train")
    assert len(read) == sum(s["task"] == "reasoning" for s in samples.values()) > 0
    for r in read:
        s = samples[r.key]
        assert r.text == s["question"]
        assert np.array_equal(r.gt_union(), native.target_masks(s)[0])
        assert not r.ignore_mask().any()
        data = json.loads((dest / "train" / f"{r.key}.json").read_text())
        assert np.array_equal(_coco_decode(data["shapes"][0]["rle"])[None], native.target_masks(s)[0])


def test_ring_polygons_are_cut_into_hole_free_pieces():
    from pixelwise.data.formats.sample import labelme_mask

    yy, xx = np.mgrid[0:40, 0:40]
    d = np.hypot(yy - 20, xx - 20)
    ring = (d <= 12) & (d >= 6)
    polys = export.mask_to_labelme_polygons(ring)
    assert len(polys) >= 2
    m = labelme_mask([{"label": "target", "points": p} for p in polys], 40, 40, "test")
    assert np.array_equal(m == 1, ring)


def test_muse_round_trip_one_track_per_target(image_dir, tmp_path):
    dest = export.export(image_dir, "muse", tmp_path / "muse")
    samples = _by_id(image_dir)
    read = muse.read_muse(dest / "muse_train.json", dest / "images")
    assert len(read) == sum(s["task"] == "multi_target" for s in samples.values()) > 0
    for r in read:
        s = samples[r.key.split("/")[0].removeprefix("pixelworld_")]
        assert np.array_equal(r.gt_instances(), native.target_masks(s))
    records = json.loads((dest / "muse_train.json").read_text())
    assert all(rec["text_answers"][0].count("{seg}") == len(rec["answers"][0]) for rec in records)


@pytest.mark.parametrize("fmt", ["mevis", "revos"])
def test_rvos_round_trip(video_dir, tmp_path, fmt):
    dest = export.export(video_dir, fmt, tmp_path / fmt)
    samples = _by_id(video_dir)
    read = rvos.read_rvos(dest, fmt)
    kinds = ("referring", "motion_referring", "reasoning", "multi_target")
    assert len(read) == sum(s["task"] in kinds for s in samples.values()) > 0
    for r in read:
        s = samples[r.meta["video"]]
        assert r.num_frames == s["num_frames"]
        assert np.array_equal(r.gt_instances(), native.target_masks(s))
        assert r.meta["type_id"] == s["type_id"]
    mask_dict = json.loads((dest / "mask_dict.json").read_text())
    for rles in mask_dict.values():
        for rle in rles:
            if rle is not None:
                assert _coco_decode(rle).any()
    if fmt == "revos":
        fg = json.loads((dest / "mask_dict_foreground.json").read_text())
        assert set(fg) == {r.meta["video"] for r in read}


def test_videorefer_round_trip(video_dir, tmp_path):
    dest = export.export(video_dir, "videorefer", tmp_path / "vr")
    samples = _by_id(video_dir)
    questions = json.loads((dest / "questions.json").read_text())
    read = videorefer.read_videorefer(dest / "questions.json", dest)
    assert len(read) == len(questions) == sum(s["task"] in ("region", "pixelqa") for s in samples.values()) > 0
    for q, r in zip(questions, read):
        s = samples[q["pixelworld_id"]]
        assert "<object0><region>" in r.text
        assert r.answer == s["options"]["ABCD".index(s["correct"])]
        native_masks = native.target_masks(s)[0]
        track = r.gt_instances()[0]
        for t in map(int, q["annotation"][0]):
            assert np.array_equal(track[t], native_masks[t])
        assert r.prompts[0].frame == s["prompts"][0]["frame"]


def test_unknown_format_is_refused(image_dir):
    with pytest.raises(ConfigError):
        export.export(image_dir, "coco-panoptic")


def _metric_values(report):
    out = []
    for v in report["metrics"].values():
        if isinstance(v, dict):
            out += [x for x in v.values() if isinstance(x, (int, float))]
        elif isinstance(v, (int, float)):
            out.append(v)
    return out


@pytest.mark.parametrize(("fmt", "bench", "sub"), [
    ("refcoco", "refcoco:train", ""), ("reasonseg", "reasonseg", "train"), ("muse", "muse:train", ""),
])
def test_image_exports_score_100_with_the_oracle_through_pixelwise_eval(image_dir, tmp_path, fmt, bench, sub):
    from pixelwise.eval.predictor import OraclePredictor
    from pixelwise.eval.runner import run

    dest = export.export(image_dir, fmt, tmp_path / fmt)  # MUSE includes zero-target questions
    report = run(bench, dest / sub, OraclePredictor(), tmp_path / "pred", workers=1)
    values = _metric_values(report)
    assert values and all(v == pytest.approx(100.0, abs=1e-3) for v in values), report["metrics"]


@pytest.mark.parametrize(("fmt", "bench"), [("mevis", "mevis"), ("revos", "revos"),
                                            ("videorefer", "videorefer-bench-q"), ("videorefer", "pixelqa")])
def test_video_exports_score_100_with_the_oracle_through_pixelwise_eval(video_dir, tmp_path, fmt, bench):
    from pixelwise.eval.predictor import OraclePredictor
    from pixelwise.eval.runner import run

    dest = export.export(video_dir, fmt, tmp_path / fmt)
    report = run(bench, dest, OraclePredictor(), tmp_path / "pred", workers=1)
    values = _metric_values(report)
    assert values and all(v == pytest.approx(100.0, abs=1e-3) for v in values), report["metrics"]


def test_exports_are_byte_identical_across_runs(image_dir, video_dir, tmp_path):
    import hashlib

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    for src, fmt in ((image_dir, "refcoco"), (image_dir, "muse"), (video_dir, "revos"), (video_dir, "videorefer")):
        a = digest(export.export(src, fmt, tmp_path / f"{fmt}-a"))
        b = digest(export.export(src, fmt, tmp_path / f"{fmt}-b"))
        assert a == b and a
