"""Readers on fixtures written in each official layout: what the files say is what the samples hold, and malformed
files fail with a FormatError naming the file and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixelwise.core.errors import FormatError
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.data.formats.groundmore import read_groundmore
from pixelwise.data.formats.muse import read_muse
from pixelwise.data.formats.reasonseg import read_reasonseg
from pixelwise.data.formats.refcoco import read_refcoco
from pixelwise.data.formats.rvos import read_rvos
from pixelwise.data.formats.videorefer import read_videorefer
from tests.formats import builders as B


@pytest.mark.parametrize("bench", ["mevis", "revos", "ref-sav"])
def test_mask_dict_layouts(tmp_path, bench):
    d = B.build_mask_dict_dataset(tmp_path / bench, bench)
    samples = {s.key: s for s in read_rvos(d["root"], bench)}
    assert set(samples) == {"vidA/0", "vidA/1", "vidB/0"}
    for key, gt in d["gt"].items():
        assert np.array_equal(samples[key].gt_union(), gt)
    s = samples["vidB/0"]
    assert s.frame_names == B.FRAMES and s.size == (B.H, B.W) and s.text == "both boxes"
    assert len(s.targets) == 2 and s.frames[0].name == "00000.jpg"
    if bench != "mevis":
        assert samples["vidA/1"].meta["type_id"] == 1
    if bench == "revos":
        fg = samples["vidA/0"].meta["foreground"].load()
        assert np.array_equal(fg, d["gt"]["vidB/0"])


@pytest.mark.parametrize("bench", ["ref-davis17", "ref-youtube-vos"])
def test_png_layouts(tmp_path, bench):
    d = B.build_png_dataset(tmp_path, bench)
    samples = {s.key: s for s in read_rvos(d["root"], bench)}
    assert set(samples) == {"vidA/0", "vidA/1"}  # the Ref-YTVOS test video is filtered out
    for key, gt in d["gt"].items():
        assert np.array_equal(samples[key].gt_union(), gt)


def test_rvos_missing_field_names_file_and_field(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    meta = json.loads(d["meta"].read_text())
    del meta["videos"]["vidA"]["expressions"]["0"]["anno_id"]
    d["meta"].write_text(json.dumps(meta))
    with pytest.raises(FormatError, match=r"meta_expressions\.json.*videos\.vidA\.expressions\.0\.anno_id"):
        read_rvos(d["root"], "mevis")


def test_rvos_rle_of_wrong_size(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    md = json.loads(d["mask_dict"].read_text())
    md["11"][0] = B.rle_encode(np.ones((5, 5), bool))
    d["mask_dict"].write_text(json.dumps(md))
    with pytest.raises(FormatError, match=r"mask_dict\.json: field '11\[0\]'.*5x5.*12x16"):
        read_rvos(d["root"], "mevis")


def test_rvos_rle_runs_not_covering_the_frame(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    md = json.loads(d["mask_dict"].read_text())
    md["12"][2] = {"size": [B.H, B.W], "counts": [10, 5]}  # 15 pixels for a 192-pixel frame
    d["mask_dict"].write_text(json.dumps(md))
    with pytest.raises(FormatError, match=r"mask_dict\.json: field '12\[2\]'.*15.*192"):
        read_rvos(d["root"], "mevis")


def test_rvos_wrong_mask_count_and_unknown_anno(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    md = json.loads(d["mask_dict"].read_text())
    md["11"] = md["11"][:3]
    del md["22"]
    d["mask_dict"].write_text(json.dumps(md))
    with pytest.raises(FormatError, match=r"mask_dict\.json: field '11' has 3 masks for the 4 frames"):
        read_rvos(d["root"], "mevis")


def test_rvos_listed_frame_missing(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    (d["root"] / "JPEGImages" / "vidB" / "00002.jpg").unlink()
    with pytest.raises(FormatError, match=r"meta_expressions\.json.*frame '00002' is listed"):
        read_rvos(d["root"], "mevis")


def test_groundmore_window(tmp_path):
    d = B.build_groundmore(tmp_path)
    (s,) = read_groundmore(d["root"])
    assert s.num_frames == 20 and s.meta["q_type"] == "Causal"
    idx = s.meta["frame_indices"]
    assert idx == [int(x) for x in np.linspace(0, 29, 20).astype(int)]
    gt = s.gt_union()
    for t, i in enumerate(idx):
        inside = 12 <= i <= 23
        assert np.array_equal(gt[t], d["mask"] if inside else np.zeros_like(d["mask"]))


def test_refcoco(tmp_path):
    d = B.build_refcoco(tmp_path)
    val = {s.key: s for s in read_refcoco(d["root"], "refcoco", "val")}
    assert set(val) == {"1/0", "1/1", "2/3"}
    assert val["1/0"].text == "the box" and val["1/0"].meta["box"] == (2, 2, 10, 8)
    gt = val["1/0"].gt_union()[0]
    assert gt.shape == (20, 24) and gt[3:8, 3:10].all() and not gt[12:].any()
    (wide,) = read_refcoco(d["root"], "refcoco", "testA")
    m = wide.gt_union()[0]
    assert m[0:10, 0:6].all() and not m[0:10, 7:12].any()  # overlap of the two parts (value 2) is not target
    assert m[0:10, 13:18].all()


def test_refcoco_unknown_annotation(tmp_path):
    d = B.build_refcoco(tmp_path)
    inst = json.loads(d["instances"].read_text())
    inst["annotations"] = inst["annotations"][1:]
    d["instances"].write_text(json.dumps(inst))
    with pytest.raises(FormatError, match=r"refs\(unc\)\.p.*ann_id 100.*instances\.json"):
        read_refcoco(d["root"], "refcoco", "val")


def test_reasonseg(tmp_path):
    d = B.build_reasonseg(tmp_path)
    a, b = read_reasonseg(d["root"])
    assert a.key == "a" and a.text == "what holds the rest?"  # only the first query
    target, ignore = a.gt_union()[0], a.ignore_mask()[0]
    assert ignore[4:9, 4:9].all() and ignore.sum() == 25  # drawn after (smaller than) the target: overwrites it
    assert target[2:13, 2:16].sum() == 11 * 14 - 25 and not target[15:, 18:].any()  # the flag shape is dropped
    assert not b.gt_union().any()


def test_reasonseg_bad_shape(tmp_path):
    d = B.build_reasonseg(tmp_path)
    (d["root"] / "b.json").write_text(json.dumps({"text": ["q"], "shapes": [{"label": "target"}]}))
    with pytest.raises(FormatError, match=r"b\.json: missing field 'shapes\[0\]\.points'"):
        read_reasonseg(d["root"])


def test_muse(tmp_path):
    d = B.build_muse(tmp_path)
    q0, q1 = read_muse(d["root"] / "muse_val.json", d["root"] / "images")
    assert q0.key == "img1/0" and len(q0.targets) == 2 and len(q1.targets) == 1
    inst = q0.gt_instances()
    assert inst.shape == (2, 1, 20, 24) and not (inst[0] & inst[1]).any()


def test_videorefer(tmp_path):
    d = B.build_videorefer(tmp_path)
    q0, _ = read_videorefer(d["root"] / "VideoRefer-Bench-Q.json", d["root"])
    assert q0.num_frames == 6 and q0.options[0] == "(A) moving right" and q0.answer.startswith("(A)")
    (p,) = q0.prompts
    assert isinstance(p, MaskPrompt) and p.frame == 2 and np.array_equal(p.mask, d["obj"][2])
    track = q0.targets[0].load()
    assert np.array_equal(track[3], d["obj"][3]) and not track[1].any()
    (box,) = read_videorefer(d["root"] / "VideoRefer-Bench-Q.json", d["root"], "box")[0].prompts
    assert isinstance(box, Box) and box.xyxy == (3, 1, 8, 5)
    (pt,) = read_videorefer(d["root"] / "VideoRefer-Bench-Q.json", d["root"], "point")[1].prompts
    assert isinstance(pt, Point) and d["obj"][0][int(pt.y), int(pt.x)]


def test_videorefer_region_missing_on_prompt_frame(tmp_path):
    d = B.build_videorefer(tmp_path)
    path = d["root"] / "VideoRefer-Bench-Q.json"
    qs = json.loads(path.read_text())
    qs[1]["frame_idx"] = "1"
    path.write_text(json.dumps(qs))
    with pytest.raises(FormatError, match=r"VideoRefer-Bench-Q\.json.*\[1\]\.annotation\[0\].*frame_idx 1"):
        read_videorefer(path, d["root"])


def test_annotation_only_copy_is_enough_to_score(tmp_path):
    import shutil

    d = B.build_mask_dict_dataset(tmp_path, "mevis")
    shutil.rmtree(d["root"] / "JPEGImages")
    meta = json.loads(d["meta"].read_text())
    for v in meta["videos"].values():
        del v["height"], v["width"]
    d["meta"].write_text(json.dumps(meta))
    samples = {s.key: s for s in read_rvos(d["root"], "mevis")}
    assert samples["vidA/1"].size == (B.H, B.W)  # from the RLEs
    assert np.array_equal(samples["vidA/1"].gt_union(), d["gt"]["vidA/1"])


def test_ref_davis17_visa_mask_dict_pkl(tmp_path):
    """VISA keys `mask_dict.pkl` by a counter over sorted videos × string-sorted expression ids."""
    import pickle

    from pycocotools import mask as coco_mask

    d = B.build_png_dataset(tmp_path)
    meta_path = d["root"] / "meta_expressions" / "valid" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    exps = meta["videos"]["vidA"]["expressions"]
    for k in range(2, 11):  # ids "0".."10": string order puts "10" third
        exps[str(k)] = {"exp": f"copy {k}", "obj_id": "1"}
    meta_path.write_text(json.dumps(meta))
    objs = B.video_objects()
    order = sorted(exps)
    assert order[:3] == ["0", "1", "10"]
    pkl = {}
    for anno, exp_id in enumerate(order):
        m = objs[2] if exp_id == "1" else objs[1]
        pkl[str(anno)] = [coco_mask.encode(np.asfortranarray(f.astype(np.uint8))) if f.any() else None for f in m]
    (d["root"] / "mask_dict.pkl").write_bytes(pickle.dumps(pkl))
    samples = {s.key: s for s in read_rvos(d["root"], "ref-davis17")}
    assert np.array_equal(samples["vidA/1"].gt_union(), objs[2])
    assert np.array_equal(samples["vidA/10"].gt_union(), objs[1])


def test_annotations_cannot_name_files_outside_the_dataset(tmp_path):
    from pixelwise.core.errors import FormatError
    from pixelwise.data.formats.sample import member

    assert member(tmp_path, "a/b.jpg", "src") == tmp_path / "a" / "b.jpg"
    for bad in ("/etc/passwd", "../outside.jpg", "a/../../x.jpg", ""):
        with pytest.raises(FormatError, match="src"):
            member(tmp_path, bad, "src")
