"""Referring video segmentation layouts built on `meta_expressions.json`: Ref-YouTube-VOS, MeViS, ReVOS, Ref-SAV,
Ref-DAVIS17 (after ReferFormer's conversion).

```
meta_expressions.json  {"videos": {vid: {"frames": [...], "expressions": {exp_id: {"exp", "obj_id", "anno_id"?,
                                                                                   "type_id"?}}, "height"?, ...}}}
mask_dict.json         {anno_id: [RLE or null per frame]}           (MeViS, ReVOS, Ref-SAV)
Annotations/<vid>/<frame>.png                                       (Ref-YouTube-VOS, Ref-DAVIS17: index = obj_id)
mask_dict_foreground.json  {vid: {"masks_rle": [RLE per frame]}}    (ReVOS robustness)
JPEGImages/<vid>/<frame>.jpg
```
One sample per expression over *all* listed frames; ground truth = union of the expression's objects (`anno_id`s in
a mask dict, or `obj_id`s in the PNGs). Every reference is checked at read time: an expression naming an unknown
anno_id, a mask list of the wrong length, or a listed frame without an image is a FormatError naming file and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelwise.core.checkpoint import restricted_pickle_loads
from pixelwise.core.errors import FormatError
from pixelwise.data.formats.sample import (
    PngTrack,
    RleTrack,
    Sample,
    frame_file,
    image_size,
    load_json,
    member,
    require,
    validate_rle,
)


@dataclass(frozen=True)
class RvosLayout:
    """Where one benchmark keeps its files, relative to the dataset root. Each entry lists the names seen in the
    wild, first match wins (e.g. ReVOS ships `meta_expressions_valid_.json`, converted copies drop the underscore).
    With a mask dict present, ground truth comes from `anno_id`s; otherwise from the `obj_id`s in annotation PNGs.
    """

    meta: tuple[str, ...]
    mask_dict: tuple[str, ...] = ("mask_dict.json",)
    annotations: tuple[str, ...] = ()
    images: tuple[str, ...] = ("JPEGImages",)
    foreground: tuple[str, ...] = ()
    exclude_meta: tuple[str, ...] = ()  # videos listed here are dropped (Ref-YouTube-VOS test videos in valid meta)
    masks_required: bool = True  # False where the split may ship without ground truth (server-only benchmarks)
    visa_counter: bool = False  # expressions without anno_id use VISA's running counter (Ref-DAVIS17 mask_dict.pkl)


_VALID_META = ("meta_expressions/valid/meta_expressions.json", "meta_expressions.json")
LAYOUTS: dict[str, RvosLayout] = {
    "mevis": RvosLayout(("meta_expressions.json",)),
    "revos": RvosLayout(("meta_expressions_valid_.json", "meta_expressions_valid.json", "meta_expressions.json"),
                        foreground=("mask_dict_foreground.json",)),
    "ref-sav": RvosLayout(("meta_expressions_valid.json", "meta_expressions.json")),
    "ref-youtube-vos": RvosLayout(_VALID_META, annotations=("valid/Annotations", "Annotations"),
                                  images=("valid/JPEGImages", "JPEGImages"),
                                  exclude_meta=("meta_expressions/test/meta_expressions.json",), masks_required=False),
    "ref-davis17": RvosLayout(_VALID_META, mask_dict=("mask_dict.json", "mask_dict.pkl"),
                              annotations=("valid/Annotations", "Annotations"),
                              images=("valid/JPEGImages", "JPEGImages"), masks_required=False, visa_counter=True),
}


def first_existing(root: Path, candidates: tuple[str, ...], kind: str = "file") -> Path | None:
    for c in candidates:
        p = root / c
        if (p.is_file() if kind == "file" else p.is_dir()):
            return p
    return None


def _ids(value: Any, source: str, field: str) -> list:
    ids = value if isinstance(value, list) else [value]
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise FormatError(f"{source}: field '{field}' must be an id or a list of ids, got {v!r}")
    return ids


def visa_anno_ids(videos: dict) -> dict[tuple[str, str], int]:
    """VISA's Ref-DAVIS17 `anno_id`s for expressions that carry none: a running counter over `sorted(videos)` ×
    `sorted(exp_ids)` — *string* sort, so "10" comes before "2" — which is how `mask_dict.pkl` is keyed."""
    ids, n = {}, 0
    for vid in sorted(videos):
        exps = videos[vid].get("expressions") if isinstance(videos[vid], dict) else None
        for exp_id in sorted(exps or {}):
            ids[(vid, exp_id)] = n
            n += 1
    return ids


def _load_mask_dict(path: Path) -> Any:
    """`mask_dict.json`, or VISA's pickled `mask_dict.pkl` (RLE counts as bytes), read by a data-only unpickler."""
    if path.suffix != ".pkl":
        return load_json(path)

    try:
        return restricted_pickle_loads(path.read_bytes(), str(path))
    except Exception as e:  # noqa: BLE001 — any unpickling failure means a malformed file
        raise FormatError(f"{path}: not a mask-dict pickle ({type(e).__name__}: {e})") from None


def _frame_size(video: dict, paths: list[Path], have_frames: bool, mask_dict: dict | None, ann_dir: Path | None,
                names: list[str], where: str) -> tuple[int, int]:
    """(H, W) of a video: meta `height`/`width`, else the first frame, else the first annotation found."""
    if "height" in video and "width" in video:
        h, w = video["height"], video["width"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            raise FormatError(f"{where}: 'height' and 'width' must be positive integers, got {h!r} x {w!r}")
        return h, w
    if have_frames:
        return image_size(paths[0])
    if mask_dict is not None:
        for exp in (video.get("expressions") or {}).values():
            for anno in _ids(exp.get("anno_id", []), where, "anno_id"):
                for rle in mask_dict.get(str(anno)) or []:
                    if (isinstance(rle, dict) and isinstance(rle.get("size"), list) and len(rle["size"]) == 2
                            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rle["size"])):
                        return rle["size"][0], rle["size"][1]
    if ann_dir is not None:
        for n in names:
            if (ann_dir / f"{n}.png").is_file():
                return image_size(ann_dir / f"{n}.png")
    raise FormatError(f"{where}: cannot tell the frame size (no height/width, no frames, no annotation)")


def read_rvos(root: str | Path, benchmark: str = "mevis", layout: RvosLayout | None = None) -> list[Sample]:
    """All expressions of a referring-VOS benchmark (see module docstring for the layouts)."""
    root = Path(root)
    if layout is None:
        if benchmark not in LAYOUTS:
            raise FormatError(f"unknown video benchmark '{benchmark}' (known: {', '.join(LAYOUTS)})")
        layout = LAYOUTS[benchmark]
    meta_path = first_existing(root, layout.meta)
    if meta_path is None:
        raise FormatError(f"{root / layout.meta[0]}: file not found"
                          + (f" (also tried {', '.join(layout.meta[1:])})" if len(layout.meta) > 1 else ""))
    meta = load_json(meta_path)
    src = str(meta_path)
    videos = require(meta, "videos", src, "", dict)
    exclude = first_existing(root, layout.exclude_meta)
    if exclude is not None and exclude != meta_path:
        test = require(load_json(exclude), "videos", str(exclude), "", dict)
        videos = {k: v for k, v in videos.items() if k not in test}
    mask_dict: dict | None = None
    mask_path = first_existing(root, layout.mask_dict)
    mask_src = str(mask_path)
    ann_root = first_existing(root, layout.annotations, "dir")
    if mask_path is not None:
        mask_dict = _load_mask_dict(mask_path)
        if not isinstance(mask_dict, dict):
            raise FormatError(f"{mask_src}: must be a JSON object keyed by anno_id")
    elif layout.masks_required:
        raise FormatError(f"{root / layout.mask_dict[0]}: file not found (ground-truth masks)")
    foreground: dict | None = None
    fg_path = first_existing(root, layout.foreground)
    if fg_path is not None:
        foreground = load_json(fg_path)
    images = first_existing(root, layout.images, "dir") or root / layout.images[0]
    visa_ids = visa_anno_ids(videos) if layout.visa_counter else {}
    samples: list[Sample] = []
    checked: set[tuple[str, tuple[int, int]]] = set()  # anno_ids whose RLEs were validated (shared across videos)
    for vid, video in videos.items():
        where = f"videos.{vid}"
        frames = require(video, "frames", src, where, list)
        if not frames:
            raise FormatError(f"{src}: field '{where}.frames' is empty")
        names = [str(f) for f in frames]
        folder = member(images, vid, f"{src}: field 'videos.{vid}'")
        if folder.is_dir():  # frames present: every listed frame must exist
            paths = [frame_file(folder, n, f"{src}: {where}.frames") for n in names]
        else:  # annotation-only copy (enough for scoring); predicting will need the frames
            paths = [folder / f"{n}.jpg" for n in names]
        size = _frame_size(video, paths, folder.is_dir(), mask_dict, ann_root / vid if ann_root else None, names,
                           f"{src}: {where}")
        fg_track = None
        if foreground is not None:
            fsrc = str(fg_path)
            rles = require(require(foreground, vid, fsrc, ""), "masks_rle", fsrc, vid, list)
            if len(rles) != len(names):
                raise FormatError(f"{fsrc}: field '{vid}.masks_rle' has {len(rles)} masks for {len(names)} frames")
            for t, rle in enumerate(rles):
                validate_rle(rle, size, f"{fsrc}: field '{vid}.masks_rle[{t}]'")
            fg_track = RleTrack(rles, size, f"{fsrc}: {vid}.masks_rle")
        for exp_id, exp in require(video, "expressions", src, where, dict).items():
            ewhere = f"{where}.expressions.{exp_id}"
            text = require(exp, "exp", src, ewhere, str)
            tracks: list = []
            if mask_dict is not None:
                annos = exp["anno_id"] if isinstance(exp, dict) and "anno_id" in exp else visa_ids.get((vid, exp_id))
                if annos is None:
                    require(exp, "anno_id", src, ewhere)  # raises, naming the field
                for anno in _ids(annos, src, f"{ewhere}.anno_id"):
                    rles = mask_dict.get(str(anno))
                    if rles is None:
                        raise FormatError(f"{mask_src}: missing field '{anno}' (anno_id of {ewhere})")
                    if not isinstance(rles, list) or len(rles) != len(names):
                        n = len(rles) if isinstance(rles, list) else type(rles).__name__
                        raise FormatError(f"{mask_src}: field '{anno}' has {n} masks for the {len(names)} "
                                          f"frames of video {vid}")
                    if (str(anno), size) not in checked:
                        for t, rle in enumerate(rles):
                            if rle:
                                validate_rle(rle, size, f"{mask_src}: field '{anno}[{t}]'")
                        checked.add((str(anno), size))
                    tracks.append(RleTrack(rles, size, f"{mask_src}: {anno}"))
            elif ann_root is not None:
                ann_dir = ann_root / vid
                pngs = [ann_dir / f"{n}.png" for n in names]
                pngs = [p if p.is_file() else None for p in pngs]
                for obj in _ids(require(exp, "obj_id", src, ewhere), src, f"{ewhere}.obj_id"):
                    if not str(obj).isdigit():
                        raise FormatError(f"{src}: field '{ewhere}.obj_id' must hold label numbers, got {obj!r}")
                    tracks.append(PngTrack(pngs, size, value=int(obj)))
            meta = {"video": vid, "exp_id": str(exp_id), "obj_id": exp.get("obj_id"), "fps": 6.0}
            if "type_id" in exp:
                if isinstance(exp["type_id"], bool) or not isinstance(exp["type_id"], (int, str)) or \
                        not str(exp["type_id"]).lstrip("-").isdigit():
                    raise FormatError(f"{src}: field '{ewhere}.type_id' must be an integer, got {exp['type_id']!r}")
                meta["type_id"] = int(exp["type_id"])
            if fg_track is not None:
                meta["foreground"] = fg_track
            samples.append(Sample(key=f"{vid}/{exp_id}", text=text, frames=paths, frame_names=names, size=size,
                                  targets=tracks, meta=meta))
    return samples
