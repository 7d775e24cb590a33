"""Prediction writers: files land in the official layout and read back to the same masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelwise.core.errors import FormatError
from pixelwise.core.results import Result, SegObject
from pixelwise.data.formats import predictions as P
from pixelwise.data.formats.sample import read_label_png


def masks(t=3, h=6, w=7, seed=0):
    return np.random.default_rng(seed).random((t, h, w)) < 0.4


def test_video_png_round_trip(tmp_path):
    m = masks()
    P.write_video_masks(tmp_path, "vid", "0", ["00000", "00005", "00010"], m)
    png = tmp_path / "vid" / "0" / "00005.png"
    im = Image.open(png)
    assert im.mode == "L" and set(np.unique(np.asarray(im))) <= {0, 255}  # VISA / ReferFormer style 0/255
    back = P.read_video_masks(tmp_path, "vid", "0", ["00000", "00005", "00010"], (6, 7))
    assert np.array_equal(back, m)


def test_video_png_missing_video_vs_missing_frame(tmp_path):
    assert P.read_video_masks(tmp_path, "absent", "0", ["00000"], (6, 7)) is None
    P.write_video_masks(tmp_path, "vid", "0", ["00000"], masks(1))
    with pytest.raises(FormatError, match=r"vid/0/00001\.png: prediction for frame '00001' is missing"):
        P.read_video_masks(tmp_path, "vid", "0", ["00000", "00001"], (6, 7))
    with pytest.raises(FormatError, match="original resolution"):
        P.read_video_masks(tmp_path, "vid", "0", ["00000"], (12, 14))


def test_ytvos_submission_layout(tmp_path):
    P.write_ytvos_submission(tmp_path, "vid", "1", ["00000"], masks(1))
    assert (tmp_path / "Annotations" / "vid" / "1" / "00000.png").is_file()


def test_refsav_json_round_trip(tmp_path):
    m = masks()
    path = P.write_refsav_json(tmp_path / "pred.json", {"vid": {"0": m}})
    data = json.loads(path.read_text())
    assert isinstance(data["vid"]["0"]["prediction_masks"][0]["counts"], str)
    table = P.read_refsav_json(path)
    from pixelwise.core.masks import rle_decode

    assert np.array_equal(np.stack([rle_decode(r) for r in table["vid"]["0"]]), m)


def test_refsav_json_malformed(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"vid": {"0": {"masks": []}}}))
    with pytest.raises(FormatError, match=r"p\.json: missing field 'vid\.0\.prediction_masks'"):
        P.read_refsav_json(tmp_path / "p.json")


def test_davis_indexed_labels(tmp_path):
    labels = np.zeros((2, 5, 5), np.uint8)
    labels[:, 1, 1] = 1
    labels[:, 3, 3] = 2
    P.write_davis_labels(tmp_path, 2, "vid", ["00000", "00001"], labels)
    im = Image.open(tmp_path / "anno_2" / "vid" / "00001.png")
    assert im.mode == "P"
    assert np.array_equal(read_label_png(tmp_path / "anno_2" / "vid" / "00001.png"), labels[1])


def test_result_json_round_trip(tmp_path):
    r = Result("(B) right", [SegObject(0, masks(1))], [0], (6, 7))
    P.write_result(tmp_path, "123/4", r)
    back = P.read_result(tmp_path, "123/4")
    assert back.answer == "(B) right" and np.array_equal(back.objects[0].masks, r.objects[0].masks)
    assert P.read_result(tmp_path, "missing") is None


def test_videorefer_answers(tmp_path):
    rows = [{"id": 0, "Answer": "(A) x", "pred": "(A)", "type": "Basic Questions"}]
    P.write_videorefer_answers(tmp_path / "a.jsonl", rows)
    assert P.read_videorefer_answers(tmp_path / "a.jsonl") == rows
    (tmp_path / "b.jsonl").write_text('{"Answer": "(A)"}\n')
    with pytest.raises(FormatError, match=r"b\.jsonl: line 1 is missing field 'pred'"):
        P.read_videorefer_answers(tmp_path / "b.jsonl")
