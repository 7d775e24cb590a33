"""RefCOCO / RefCOCO+ / RefCOCOg: `refs(<splitBy>).p` (pickled list of refs) + COCO-style `instances.json`.

One sample per *sentence* (LISA scores every sentence of every ref of an image as one mask pair). Ground truth is
the referred COCO annotation rasterised by pycocotools at the original image size (see `coco_segmentation_mask`);
the annotation box (x, y, w, h → x1, y1, x2, y2) is kept in `meta["box"]` for REC accuracy.
"""

from __future__ import annotations

from pathlib import Path

from pixelwise.core.checkpoint import restricted_pickle_loads
from pixelwise.core.errors import FormatError
from pixelwise.data.formats.sample import (
    CocoTrack,
    Sample,
    load_json,
    member,
    require,
    validate_coco_segmentation,
)

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


def load_refs(path: Path) -> list[dict]:
    """The refs pickle (a Python 2 pickle in the public release: retried with latin-1 strings)."""
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    data = path.read_bytes()
    try:  # data-only unpickler: a reference to any class or function (a code-execution payload) is refused
        try:
            refs = restricted_pickle_loads(data, str(path))
        except UnicodeDecodeError:
            refs = restricted_pickle_loads(data, str(path), encoding="latin1")
    except Exception as e:  # noqa: BLE001 — any unpickling failure means a malformed file
        raise FormatError(f"{path}: not a refs pickle ({type(e).__name__}: {e})") from None
    if not isinstance(refs, list):
        raise FormatError(f"{path}: refs must be a list, got {type(refs).__name__}")
    return refs


def _split_matches(ref_split: str, split: str) -> bool:
    # refer.getRefIds: "testA" / "testB" select any split containing that letter (e.g. "testAB")
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    return ref_split == split


def read_refcoco(
    root: str | Path,
    dataset: str = "refcoco",
    split: str = "val",
    split_by: str | None = None,
    image_dir: str | Path | None = None,
) -> list[Sample]:
    """Samples of one split. Layout: `<root>/<dataset>/refs(<split_by>).p`, `<root>/<dataset>/instances.json`,
    images in `image_dir` (default `<root>/images/mscoco/images/train2014`)."""
    root = Path(root)
    split_by = split_by or SPLIT_BY.get(dataset, "unc")
    refs_path = root / dataset / f"refs({split_by}).p"
    inst_path = root / dataset / "instances.json"
    images = Path(image_dir) if image_dir else root / "images" / "mscoco" / "images" / "train2014"
    refs = load_refs(refs_path)
    inst = load_json(inst_path)
    imgs = {}
    for k, im in enumerate(require(inst, "images", str(inst_path), "", list)):
        w = f"images[{k}]"
        imgs[require(im, "id", str(inst_path), w)] = im
    anns = {}
    for k, a in enumerate(require(inst, "annotations", str(inst_path), "", list)):
        anns[require(a, "id", str(inst_path), f"annotations[{k}]")] = a
    samples: list[Sample] = []
    for k, ref in enumerate(refs):
        where = f"[{k}]"
        if not _split_matches(str(require(ref, "split", str(refs_path), where)), split):
            continue
        ann_id = require(ref, "ann_id", str(refs_path), where)
        image_id = require(ref, "image_id", str(refs_path), where)
        if ann_id not in anns:
            raise FormatError(f"{refs_path}: ref {where} names ann_id {ann_id}, which is not in {inst_path}")
        if image_id not in imgs:
            raise FormatError(f"{refs_path}: ref {where} names image_id {image_id}, which is not in {inst_path}")
        im, ann = imgs[image_id], anns[ann_id]
        h = require(im, "height", str(inst_path), f"images[id={image_id}]", int)
        w = require(im, "width", str(inst_path), f"images[id={image_id}]", int)
        name = require(im, "file_name", str(inst_path), f"images[id={image_id}]", str)
        segm = require(ann, "segmentation", str(inst_path), f"annotations[id={ann_id}]")
        segm_src = f"{inst_path}: field 'annotations[id={ann_id}].segmentation'"
        validate_coco_segmentation(segm, (h, w), segm_src)
        gt = CocoTrack(segm, (h, w), segm_src)  # shared by the ref's sentences, rasterised when scored
        bbox = require(ann, "bbox", str(inst_path), f"annotations[id={ann_id}]", list)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise FormatError(f"{inst_path}: field 'annotations[id={ann_id}].bbox' must be 4 numbers [x, y, w, h]")
        bx, by, bw, bh = bbox
        for s, sent in enumerate(require(ref, "sentences", str(refs_path), where, list)):
            text = require(sent, "sent", str(refs_path), f"{where}.sentences[{s}]", str)
            sent_id = sent.get("sent_id", s)
            samples.append(
                Sample(
                    key=f"{image_id}/{sent_id}",
                    text=text,
                    frames=[member(images, name, f"{inst_path}: field 'images[id={image_id}].file_name'")],
                    frame_names=[Path(name).stem],
                    size=(h, w),
                    targets=[gt],
                    meta={"image_id": image_id, "ref_id": ref.get("ref_id"), "ann_id": ann_id,
                          "box": (bx, by, bx + bw, by + bh)},
                )
            )
    return samples
