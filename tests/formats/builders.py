"""Tiny datasets written in each benchmark's official layout, with the ground truth they encode.

Every builder returns the root it wrote plus the masks it put there, so tests can check that a reader gives back
exactly what the files say.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.core.masks import rle_encode

H, W = 12, 16


def rect(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_jpg(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def write_palette(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (768 - 12))
    im.save(path)


FRAMES = ["00000", "00001", "00002", "00003"]


def video_objects() -> dict[int, np.ndarray]:
    """anno/obj id → masks [4, H, W]. Object 2 is absent on frame 1 (an odd frame) and touches the border."""
    o1 = np.stack([rect(1, 5, 1 + t, 6 + t) for t in range(4)])
    o2 = np.stack([rect(6, 12, 10, 16) for _ in range(4)])
    o2[1] = False
    return {1: o1, 2: o2}


def _frames(root: Path, images: str, videos: list[str]) -> None:
    for v in videos:
        for k, f in enumerate(FRAMES):
            write_jpg(root / images / v / f"{f}.jpg", seed=k)


def build_mask_dict_dataset(root: Path, benchmark: str) -> dict:
    """MeViS / ReVOS / Ref-SAV layout: meta_expressions + mask_dict.json (+ ReVOS foreground)."""
    objs = video_objects()
    meta_name = {"mevis": "meta_expressions.json", "revos": "meta_expressions_valid_.json",
                 "ref-sav": "meta_expressions_valid.json"}[benchmark]
    # expressions: vidA/0 → object 1 (type 0), vidA/1 → object 2 (type 1), vidB/0 → objects 1 + 2 (type 0)
    exps = {
        "vidA": {"0": {"exp": "the left box", "obj_id": [1], "anno_id": [11], "type_id": 0},
                 "1": {"exp": "the corner box", "obj_id": [2], "anno_id": [12], "type_id": 1}},
        "vidB": {"0": {"exp": "both boxes", "obj_id": [1, 2], "anno_id": [21, 22], "type_id": 0}},
    }
    if benchmark == "mevis":
        for v in exps.values():
            for e in v.values():
                e.pop("type_id")
    videos = {v: {"vid_id": i, "frames": FRAMES, "expressions": e, "height": H, "width": W}
              for i, (v, e) in enumerate(exps.items())}
    mask_dict = {str(a): [rle_encode(m) if m.any() else None for m in objs[o]]
                 for a, o in ((11, 1), (12, 2), (21, 1), (22, 2))}
    root.mkdir(parents=True, exist_ok=True)
    (root / meta_name).write_text(json.dumps({"videos": videos}))
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    if benchmark == "revos":
        fg = {v: {"masks_rle": [rle_encode(objs[1][t] | objs[2][t]) for t in range(4)]} for v in exps}
        (root / "mask_dict_foreground.json").write_text(json.dumps(fg))
    _frames(root, "JPEGImages", list(exps))
    gts = {"vidA/0": objs[1], "vidA/1": objs[2], "vidB/0": objs[1] | objs[2]}
    return {"root": root, "gt": gts, "meta": root / meta_name, "mask_dict": root / "mask_dict.json"}


def build_png_dataset(root: Path, benchmark: str = "ref-davis17") -> dict:
    """Ref-YouTube-VOS / Ref-DAVIS17 layout: meta_expressions/valid + valid/Annotations palette PNGs."""
    objs = video_objects()
    labels = np.zeros((4, H, W), np.uint8)
    labels[objs[1]] = 1
    labels[objs[2]] = 2
    exps = {"0": {"exp": "the left box", "obj_id": "1"}, "1": {"exp": "the corner box", "obj_id": "2"}}
    meta = {"videos": {"vidA": {"expressions": exps, "frames": FRAMES}}}
    (root / "meta_expressions" / "valid").mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta))
    for t, f in enumerate(FRAMES):
        write_palette(root / "valid" / "Annotations" / "vidA" / f"{f}.png", labels[t])
    _frames(root, "valid/JPEGImages", ["vidA"])
    if benchmark == "ref-youtube-vos":  # a test video listed in valid meta must be dropped
        meta["videos"]["testvid"] = {"expressions": exps, "frames": FRAMES}
        (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta))
        (root / "meta_expressions" / "test").mkdir(parents=True, exist_ok=True)
        (root / "meta_expressions" / "test" / "meta_expressions.json").write_text(
            json.dumps({"videos": {"testvid": {"expressions": exps, "frames": FRAMES}}}))
    return {"root": root, "gt": {"vidA/0": objs[1], "vidA/1": objs[2]}, "labels": labels}


def build_groundmore(root: Path, n_frames: int = 30) -> dict:
    vid = "clipx_0110_0120"
    obj = rect(2, 8, 3, 9)
    for i in range(n_frames):
        write_jpg(root / vid / "images" / f"frame_{i:06d}.jpg", seed=i)
        write_palette(root / vid / "masks" / f"frame_{i:06d}.png", obj.astype(np.uint8) * 3)
    q = {"question": "who jumps?", "answer": "the box", "obj_id": 3, "q_type": "Causal",
         "action_start": "1:12", "action_end": "1:14"}  # frames 12 .. 23
    (root / "test_v2.json").write_text(json.dumps({"videos": {vid: {"questions": {"0": q}}}}))
    return {"root": root, "video": vid, "mask": obj, "window": (12, 23)}


def build_refcoco(root: Path) -> dict:
    """refer layout: refcoco/refs(unc).p + refcoco/instances.json + images/mscoco/images/train2014."""
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    write_jpg(img_dir / "COCO_train2014_000000000001.jpg", 20, 24)
    write_jpg(img_dir / "COCO_train2014_000000000002.jpg", 20, 24)
    inst = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 20, "width": 24},
                   {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 20, "width": 24}],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 8, 6],
             "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]]},
            {"id": 101, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 24, 20],
             # two overlapping parts: pixels covered twice sum to 2 and are not target for LISA
             "segmentation": [[0, 0, 12, 0, 12, 10, 0, 10], [6, 0, 18, 0, 18, 10, 6, 10]]},
            {"id": 102, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [0, 12, 5, 5],
             "segmentation": [[0, 12, 5, 12, 5, 17, 0, 17]]},
        ],
        "categories": [{"id": 1, "name": "thing", "supercategory": "thing"}],
    }
    refs = [
        {"ref_id": 0, "ann_id": 100, "image_id": 1, "category_id": 1, "split": "val", "sent_ids": [0, 1],
         "sentences": [{"sent_id": 0, "raw": "A", "sent": "the box", "tokens": ["the", "box"]},
                       {"sent_id": 1, "raw": "B", "sent": "square thing", "tokens": ["square", "thing"]}]},
        {"ref_id": 1, "ann_id": 101, "image_id": 2, "category_id": 1, "split": "testA", "sent_ids": [2],
         "sentences": [{"sent_id": 2, "raw": "C", "sent": "wide box", "tokens": []}]},
        {"ref_id": 2, "ann_id": 102, "image_id": 2, "category_id": 1, "split": "val", "sent_ids": [3],
         "sentences": [{"sent_id": 3, "raw": "D", "sent": "small box", "tokens": []}]},
        {"ref_id": 3, "ann_id": 100, "image_id": 1, "category_id": 1, "split": "train", "sent_ids": [4],
         "sentences": [{"sent_id": 4, "raw": "E", "sent": "train only", "tokens": []}]},
    ]
    (root / "refcoco").mkdir(parents=True, exist_ok=True)
    (root / "refcoco" / "instances.json").write_text(json.dumps(inst))
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return {"root": root, "instances": root / "refcoco" / "instances.json"}


def build_reasonseg(root: Path) -> dict:
    split = root / "val"
    write_jpg(split / "a.jpg", 20, 24)
    shapes = [
        {"label": "target", "points": [[2, 2], [15, 2], [15, 12], [2, 12]]},
        {"label": "Ignore", "points": [[4, 4], [8, 4], [8, 8], [4, 8]]},  # inside the target, drawn after it
        {"label": "Flag", "points": [[18, 15], [22, 15], [22, 18]]},  # dropped whatever its case
    ]
    (split / "a.json").write_text(json.dumps({"text": ["what holds the rest?", "second query"],
                                              "is_sentence": True, "shapes": shapes}))
    write_jpg(split / "b.jpg", 20, 24)
    (split / "b.json").write_text(json.dumps({"text": ["nothing here"], "is_sentence": False, "shapes": []}))
    return {"root": split}


def build_muse(root: Path) -> dict:
    write_jpg(root / "images" / "img1.jpg", 20, 24)
    rec = {"file_name": "img1.jpg", "height": 20, "width": 24, "ann_list": [],
           "questions": ["Which items are boxes?", "Which one is small?"],
           "answers": [[{"segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]]}, {"segmentation": [[12, 10, 20, 10, 20, 18, 12, 18]]}],
                       [{"segmentation": [[12, 10, 20, 10, 20, 18, 12, 18]]}]]}
    (root / "muse_val.json").write_text(json.dumps([rec]))
    return {"root": root}


def build_videorefer(root: Path) -> dict:
    video = "DAVIS/JPEGImages/480p/boxes"
    for i in range(6):
        write_jpg(root / video / f"{i:05d}.jpg", seed=i)
    objs = video_objects()
    ann = [{str(t): {"segmentation": rle_encode(objs[1][t])} for t in (0, 2, 3)}]
    qs = [
        {"id": 0, "video": video, "Question": "What is <object0><region> doing?", "type": "Basic Questions",
         "options": ["(A) moving right", "(B) standing", "(C) flying", "(D) sleeping"], "Answer": "(A) moving right",
         "frame_idx": "2", "annotation": ann},
        {"id": 1, "video": video, "Question": "Where will <object0><region> go?", "type": "Future Predictions",
         "options": ["(A) left", "(B) right"], "Answer": "(B) right", "frame_idx": "0", "annotation": ann},
    ]
    (root / "VideoRefer-Bench-Q.json").write_text(json.dumps(qs))
    return {"root": root, "obj": objs[1]}
