"""ReasonSeg: `<split>/<name>.jpg` + `<name>.json` (LabelMe-like `text`, `is_sentence`, `shapes`).

One sample per image, for the *first* query only (`text[0]`), as LISA evaluates. Ground truth is rasterised like
LISA (`labelme_mask`): value 1 = target, 255 = "ignore" pixels, which are excluded from I and U.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelwise.core.errors import FormatError
from pixelwise.data.formats.sample import LabelMeTrack, Sample, image_size, labelme_mask, load_json, require


def read_reasonseg(split_dir: str | Path) -> list[Sample]:
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FormatError(f"{split_dir}: ReasonSeg split folder not found")
    samples = []
    for js in sorted(split_dir.glob("*.json")):
        image = js.with_suffix(".jpg")
        if not image.is_file():
            raise FormatError(f"{js}: image {image.name} is missing")
        data = load_json(js, encodings=("utf-8", "cp1252"))
        texts = require(data, "text", str(js), "", (list, str))
        texts = [texts] if isinstance(texts, str) else texts
        if not texts:
            raise FormatError(f"{js}: field 'text' is empty")
        shapes = require(data, "shapes", str(js), "", list)
        h, w = image_size(image)
        labelme_mask(shapes, h, w, str(js))  # validates every shape now; rasterised again when scored
        samples.append(
            Sample(
                key=js.stem,
                text=str(texts[0]),
                frames=[image],
                frame_names=[js.stem],
                size=(h, w),
                targets=[LabelMeTrack(shapes, (h, w), 1, str(js))],
                ignore=LabelMeTrack(shapes, (h, w), 255, str(js)),
                meta={"is_sentence": bool(data.get("is_sentence", False))},
            )
        )
    if not samples:
        raise FormatError(f"{split_dir}: no ReasonSeg annotations (*.json) found")
    return samples


def reasonseg_labels(sample: Sample) -> np.ndarray:
    """The LISA label map (0 / 1 / 255) of a ReasonSeg sample, for writing it back out."""
    m = np.zeros(sample.size, np.uint8)
    m[sample.gt_union()[0]] = 1
    ign = sample.ignore_mask()
    if ign is not None:
        m[ign[0]] = 255
    return m
