"""Export a native PixelWorld folder to the public benchmark layouts, so PixelWorld runs through exactly the same
readers (`pixelwise.data.formats`) and scorers as the real benchmarks.

| format     | samples exported                              | files under OUT/<format>/ |
|------------|-----------------------------------------------|---------------------------|
| refcoco    | image referring + grounding (one sentence)    | `refcoco/instances.json`, `refcoco/refs(unc).p`, `images/mscoco/images/train2014/*.jpg` |
| reasonseg  | image reasoning                               | `<split>/<id>.jpg` + `<id>.json` (LabelMe polygons + an exact `rle` per shape) |
| muse       | image multi-target (incl. zero-target)        | `muse_<split>.json`, `images/*.jpg` |
| mevis      | video referring/motion/reasoning/multi-target | `meta_expressions.json`, `mask_dict.json`, `JPEGImages/<vid>/<frame>.jpg` |
| revos      | same, ReVOS names + type_id + foreground      | `meta_expressions_valid_.json`, `mask_dict.json`, `mask_dict_foreground.json`, `JPEGImages/` |
| videorefer | video region questions + PixelQA              | `questions.json`, `videos/<vid>/<frame>.jpg` |

Frames are re-rendered from each sample's scene graph (not decoded from the lossy MP4), and masks are the native
RLEs; exports therefore agree with the native masks exactly (tested). Images are JPEG (quality 95) like the
originals; the masks, not the pixels, are the ground truth.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pixelwise.core.errors import ConfigError
from pixelwise.core.io import atomic_write_bytes, atomic_write_text
from pixelwise.core.masks import rle_decode, rle_encode
from pixelwise.data.pixelworld import native
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene

FORMATS = ("refcoco", "reasonseg", "muse", "mevis", "revos", "videorefer")
JPEG_QUALITY = 95
SEG = "[SEG]"


def _jpg(path: Path, frame: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    atomic_write_bytes(path, buf.tobytes())


def _frames(sample: dict[str, Any]) -> np.ndarray:
    frames, _, _ = render(Scene.from_json(sample["scene"]))
    return frames


def _json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")


def _xywh(box: list[int]) -> list[int]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


# What each layout takes of a PixelWorld split (the rest of its samples are other tasks), for the export summary.
TAKES = {
    "refcoco": "single-target referring / grounding images",
    "reasonseg": "single-target reasoning images",
    "muse": "multi-target images",
    "mevis": "referring / motion / reasoning / multi-target clips",
    "revos": "referring / motion / reasoning / multi-target clips",
    "videorefer": "region and PixelQA clips",
}


def export(root: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write the `fmt` layout of the native folder `root` into `out` (default `root/<fmt>`)."""
    return export_counted(root, fmt, out)[0]


def export_counted(root: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, int, dict[str, int]]:
    """`export`, and how many samples the layout received, with the task counts of those it could not take."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    root = Path(root)
    dest = Path(out) if out is not None else root / fmt
    dest.mkdir(parents=True, exist_ok=True)
    samples = native.load_samples(root)
    meta = native.load_meta(root)
    taken = {"refcoco": _refcoco, "reasonseg": _reasonseg, "muse": _muse, "mevis": _rvos, "revos": _rvos,
             "videorefer": _videorefer}[fmt](samples, dest, meta["split"], fmt)
    left: dict[str, int] = {}
    for s in samples:
        if s["id"] not in taken:
            kind = f"{s['task']} ({'image' if s['num_frames'] == 1 else 'clip'})"
            left[kind] = left.get(kind, 0) + 1
    return dest, len(taken), dict(sorted(left.items()))


# ----------------------------------------------------------------------------------------------------------------


def _refcoco(samples: list[dict], dest: Path, split: str, fmt: str) -> set[str]:
    taken: set[str] = set()
    images_dir = dest / "images" / "mscoco" / "images" / "train2014"
    cats = {name: k + 1 for k, name in enumerate(sorted({o["shape"] for s in samples for o in s["scene"]["objects"]}))}
    images, anns, refs = [], [], []
    for s in samples:
        if s["num_frames"] != 1 or s["task"] not in ("referring", "grounding") or len(s["targets"]) != 1:
            continue
        taken.add(s["id"])
        image_id = s["index"] + 1
        name = f"pixelworld_{s['id']}.jpg"
        _jpg(images_dir / name, _frames(s)[0])
        images.append({"id": image_id, "file_name": name, "height": s["height"], "width": s["width"]})
        tgt = s["targets"][0]
        obj = next(o for o in s["scene"]["objects"] if o["id"] == tgt["obj_id"])
        ann_id = image_id * 100 + tgt["obj_id"]
        rle = tgt["masks"][0]
        anns.append({"id": ann_id, "image_id": image_id, "category_id": cats[obj["shape"]], "iscrowd": 0,
                     "area": int(rle_decode(rle).sum()), "bbox": _xywh(tgt["boxes"][0]), "segmentation": [rle]})
        sent = s["phrase"]
        refs.append({"ref_id": len(refs), "ann_id": ann_id, "image_id": image_id, "category_id": cats[obj["shape"]],
                     "split": split, "sent_ids": [len(refs)], "file_name": name,
                     "sentences": [{"sent_id": len(refs), "raw": sent, "sent": sent, "tokens": sent.split()}]})
    inst = {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n, "supercategory": "shape"} for n, i in cats.items()]}
    _json(dest / "refcoco" / "instances.json", inst)
    atomic_write_bytes(dest / "refcoco" / "refs(unc).p", pickle.dumps(refs, protocol=2))
    return taken


def mask_to_labelme_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Polygons whose LISA-style rasterisation (1-px polyline + fill, int coordinates) gives back `mask` exactly,
    when possible: the mask is cut into hole-free pieces (a ring becomes two arcs) and each piece is traced."""
    pieces = [mask.astype(np.uint8)]
    out: list[list[list[int]]] = []
    for _ in range(64):
        if not pieces:
            break
        m = pieces.pop()
        cs, hier = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        if hier is not None and (hier[0][:, 3] >= 0).any():
            hole = cs[int(np.flatnonzero(hier[0][:, 3] >= 0)[0])]
            xc = round(float(hole[:, 0, 0].mean()))
            left, right = m.copy(), m.copy()
            left[:, xc:] = 0
            right[:, :xc] = 0
            pieces += [left, right]
            continue
        out += [c[:, 0, :].tolist() for c in cs]
    return out


def _reasonseg(samples: list[dict], dest: Path, split: str, fmt: str) -> set[str]:
    taken: set[str] = set()
    folder = dest / split
    for s in samples:
        if s["num_frames"] != 1 or s["task"] != "reasoning" or len(s["targets"]) != 1:
            continue
        taken.add(s["id"])
        rle = s["targets"][0]["masks"][0]
        m = rle_decode(rle)
        shapes = [{"label": "target", "points": p, "shape_type": "polygon", "rle": rle}
                  for p in mask_to_labelme_polygons(m)]
        _jpg(folder / f"{s['id']}.jpg", _frames(s)[0])
        _json(folder / f"{s['id']}.json", {"text": [s["question"]], "is_sentence": True, "shapes": shapes,
                                            "answer": s["answer"], "imageHeight": s["height"],
                                            "imageWidth": s["width"]})
    return taken


def _muse(samples: list[dict], dest: Path, split: str, fmt: str) -> set[str]:
    taken: set[str] = set()
    records = []
    for s in samples:
        if s["num_frames"] != 1 or s["task"] != "multi_target":
            continue
        taken.add(s["id"])
        name = f"pixelworld_{s['id']}.jpg"
        frames, vis, _ = render(Scene.from_json(s["scene"]))
        _jpg(dest / "images" / name, frames[0])
        objs = s["scene"]["objects"]
        ann_list = []
        for k, o in enumerate(objs):
            m = vis[k, 0]
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            box = [int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()), int(ys.max() + 1 - ys.min())]
            ann_list.append({"bbox": box, "category_id": k + 1, "category_name": o["shape"],
                             "rephrased_name": f"{o['color']} {o['shape']}", "segmentation": [rle_encode(m)]})
        answers = [[{"bbox": _xywh(t["boxes"][0]), "rephrased_name": t["label"], "segmentation": [t["masks"][0]]}
                    for t in s["targets"]]]
        records.append({"file_name": name, "height": s["height"], "width": s["width"], "ann_list": ann_list,
                        "questions": [s["question"]], "answers": answers,
                        "text_answers": [s["answer"].replace(SEG, "{seg}")], "pixelworld_id": s["id"]})
    _json(dest / f"muse_{split}.json", records)
    return taken


def _rvos(samples: list[dict], dest: Path, split: str, fmt: str) -> set[str]:
    taken: set[str] = set()
    videos: dict[str, Any] = {}
    mask_dict: dict[str, Any] = {}
    foreground: dict[str, Any] = {}
    anno = 0
    for s in samples:
        if s["num_frames"] == 1 or s["task"] not in ("referring", "motion_referring", "reasoning", "multi_target"):
            continue
        taken.add(s["id"])
        vid = s["id"]
        frames, vis, _ = render(Scene.from_json(s["scene"]))
        names = [f"{t:05d}" for t in range(len(frames))]
        for t, name in enumerate(names):
            _jpg(dest / "JPEGImages" / vid / f"{name}.jpg", frames[t])
        ids = []
        for tgt in s["targets"]:
            mask_dict[str(anno)] = tgt["masks"]
            ids.append(anno)
            anno += 1
        text = s["phrase"] or s["question"]
        exp = {"exp": text, "obj_id": [t["obj_id"] for t in s["targets"]], "anno_id": ids,
               "type_id": int(s["type_id"])}
        videos[vid] = {"vid_id": len(videos), "height": s["height"], "width": s["width"], "frames": names,
                       "expressions": {"0": exp}}
        if fmt == "revos":
            fg = vis.any(0)
            foreground[vid] = {"masks_rle": [rle_encode(f) for f in fg],
                               "foreground_ratio": [float(f.mean()) for f in fg]}
    _json(dest / ("meta_expressions.json" if fmt == "mevis" else "meta_expressions_valid_.json"), {"videos": videos})
    _json(dest / "mask_dict.json", mask_dict)
    if fmt == "revos":
        _json(dest / "mask_dict_foreground.json", foreground)
    return taken


QTYPE_TO_VIDEOREFER = {"color": "Basic Questions", "shape": "Basic Questions", "direction": "Sequential Questions", "count": "Relationship Questions",
                       "event": "Sequential Questions"}


def _videorefer(samples: list[dict], dest: Path, split: str, fmt: str) -> set[str]:
    taken: set[str] = set()
    out = []
    for s in samples:
        if s["num_frames"] == 1 or s["task"] not in ("region", "pixelqa"):
            continue
        taken.add(s["id"])
        vid = f"videos/{s['id']}"
        frames = _frames(s)
        for t in range(len(frames)):
            _jpg(dest / vid / f"{t:05d}.jpg", frames[t])
        tgt = s["targets"][0]
        if s["task"] == "region":
            keys = sorted({p["frame"] for p in s["prompts"]})
        else:  # PixelQA: the object's masks over the whole clip are the segmentation ground truth
            keys = [t for t, m in enumerate(tgt["masks"]) if m is not None]
        frame_idx = int(s["prompts"][0]["frame"])
        annotation = [{str(t): {"segmentation": tgt["masks"][t]} for t in keys}]
        question = s["question"].split(" (A) ")[0].replace("<region>", "<object0><region>")
        out.append({"id": len(out), "video": vid, "Question": question,
                    "type": QTYPE_TO_VIDEOREFER.get(s["qtype"], "Basic Questions"), "options": s["options"],
                    "Answer": s["options"]["ABCD".index(s["correct"])], "frame_idx": str(frame_idx),
                    "annotation": annotation, "pixelworld_id": s["id"], "pixelworld_task": s["task"],
                    "prompts": s["prompts"] if s["task"] == "pixelqa" else None})
    _json(dest / "questions.json", out)
    return taken
