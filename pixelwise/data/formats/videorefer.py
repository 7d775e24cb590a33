"""VideoRefer-Bench-Q (also PixelQA's input): a JSON list of multiple-choice questions about regions.

```
[{"id", "video": "DAVIS/JPEGImages/480p/aerobatics", "Question": "... <object3><region> ...", "type",
  "options": ["(A) ...", ...], "Answer": "(A) ...", "frame_idx": "57",
  "annotation": [{"<frame index>": {"segmentation": RLE}, ...}, ...]}]      # one dict per <region>
```
One sample per question over all frames of the video folder (sorted). Each region becomes a `MaskPrompt` on
`frame_idx` (VideoRefer's single-frame mode); `prompt_type="box"` or `"point"` turns it into a box or a point on
that frame as PixelQA does. Each region's annotated frames also form a target track (PixelQA scores them).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pixelwise.core import masks as mask_ops
from pixelwise.core.errors import FormatError, MaskError
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.data.formats.sample import (
    RleTrack,
    Sample,
    image_size,
    load_json,
    member,
    require,
    validate_rle,
)

PROMPT_TYPES = ("mask", "box", "point")


def region_prompt(mask: np.ndarray, frame: int, prompt_type: str):
    """A region given as a mask, its tight box, or the mask pixel nearest the mask's centroid."""
    if prompt_type == "mask":
        return MaskPrompt(mask, frame)
    if prompt_type == "box":
        x1, y1, x2, y2 = mask_ops.mask_to_box(mask)
        return Box(x1, y1, x2, y2, frame)
    ys, xs = np.nonzero(mask)
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return Point(float(xs[k]), float(ys[k]), frame)


def _q_type(q: dict, src: str, where: str) -> str | None:
    t = q.get("type")
    if t is not None and not isinstance(t, str):
        raise FormatError(f"{src}: field '{where}.type' must be a string, got {type(t).__name__}")
    return t


def read_videorefer(json_path: str | Path, video_root: str | Path, prompt_type: str = "mask") -> list[Sample]:
    json_path, video_root = Path(json_path), Path(video_root)
    if prompt_type not in PROMPT_TYPES:
        raise FormatError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}")
    src = str(json_path)
    data = load_json(json_path)
    if not isinstance(data, list):
        raise FormatError(f"{src}: VideoRefer-Bench-Q must be a JSON list of questions")
    samples = []
    for i, q in enumerate(data):
        where = f"[{i}]"
        video = require(q, "video", src, where, str)
        folder = member(video_root, video, f"{src}: field '{where}.video'")
        frames = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if folder.is_dir() else []
        if not frames:
            raise FormatError(f"{src}: {where}.video '{video}' has no frames in {folder}")
        size = image_size(frames[0])
        try:
            frame_idx = int(require(q, "frame_idx", src, where))
        except (TypeError, ValueError):
            raise FormatError(f"{src}: field '{where}.frame_idx' must be a frame number") from None
        if not 0 <= frame_idx < len(frames):
            raise FormatError(f"{src}: field '{where}.frame_idx' = {frame_idx} but {folder} has {len(frames)} frames")
        prompts, tracks = [], []
        for r, region in enumerate(require(q, "annotation", src, where, list)):
            rw = f"{where}.annotation[{r}]"
            if not isinstance(region, dict) or not region:
                raise FormatError(f"{src}: field '{rw}' must map frame indices to segmentations")
            rles: list = [None] * len(frames)  # kept encoded: decoded only when scored
            for fk, ann in region.items():
                try:
                    t = int(fk)
                except ValueError:
                    raise FormatError(f"{src}: field '{rw}' key {fk!r} is not a frame index") from None
                if not 0 <= t < len(frames):
                    raise FormatError(f"{src}: field '{rw}.{fk}' names a frame beyond the {len(frames)} in {folder}")
                rle = require(ann, "segmentation", src, f"{rw}.{fk}")
                validate_rle(rle, size, f"{src}: field '{rw}.{fk}.segmentation'")
                rles[t] = rle
            if rles[frame_idx] is None:
                raise FormatError(f"{src}: field '{rw}' has no mask on frame_idx {frame_idx}")
            try:
                prompt_mask = mask_ops.rle_decode(rles[frame_idx], size, f"{src}: {rw}.{frame_idx}")
            except MaskError as e:
                raise FormatError(str(e)) from None
            if not prompt_mask.any():
                raise FormatError(f"{src}: field '{rw}' has an empty mask on frame_idx {frame_idx}")
            prompts.append(region_prompt(prompt_mask, frame_idx, prompt_type))
            tracks.append(RleTrack(rles, size, f"{src}: {rw}"))
        options = [str(o) for o in require(q, "options", src, where, list)]
        answer = require(q, "Answer", src, where, str)
        if not re.search(r"\(([A-Z])\)", answer):
            raise FormatError(f"{src}: field '{where}.Answer' = {answer!r} has no '(X)' option letter")
        samples.append(
            Sample(
                key=str(q.get("id", i)),
                text=require(q, "Question", src, where, str),
                frames=frames,
                frame_names=[p.stem for p in frames],
                size=size,
                targets=tracks,
                prompts=prompts,
                options=options,
                answer=answer,
                meta={"video": video, "q_type": _q_type(q, src, where), "frame_idx": frame_idx,
                      "annotated_frames": sorted({int(k) for reg in q["annotation"] for k in reg})},
            )
        )
    return samples
