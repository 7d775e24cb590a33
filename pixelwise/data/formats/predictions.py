"""Prediction files in each benchmark's official submission layout, written and read back.

* PNG folders `<out>/<video>/<exp_id>/<frame>.png` (MeViS, ReVOS, Ref-DAVIS17 VISA-style, GroundMoRe), L-mode
  0/255 like VISA/ReferFormer write them; Ref-YouTube-VOS wants the same under `Annotations/` and zipped.
* Ref-SAV: one JSON `{vid: {exp_id: {"prediction_masks": [RLE per frame]}}}` (Sa2VA).
* Ref-DAVIS17 ReferFormer protocol: indexed palette PNGs `<out>/anno_<k>/<video>/<frame>.png` (all objects of one
  annotator set in one label map).
* Images (RefCOCO, ReasonSeg, MUSE) and questions (VideoRefer, PixelQA): one pixelwise result JSON per sample,
  `<out>/<key>.json`; VideoRefer's own answer file is JSON lines `{"id", "video", "Question", "Answer", "pred",
  "type"}`.
Every file goes through `atomic_write`, so a killed run never leaves a half-written prediction that a resumed run
would trust.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelwise.core import masks as mask_ops
from pixelwise.core.errors import FormatError, MaskError
from pixelwise.core.io import atomic_write, atomic_write_text
from pixelwise.core.results import Result
from pixelwise.data.formats.sample import read_label_png

DAVIS_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_mask_png(path: Path, mask: np.ndarray) -> Path:
    """A binary mask as an L-mode PNG with values 0 / 255."""
    m = np.asarray(mask, dtype=bool)
    with atomic_write(path) as f:
        f.write(_png_bytes(Image.fromarray(m.astype(np.uint8) * 255, mode="L")))
    return path


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    """An indexed (palette) PNG of integer labels, DAVIS colours for the first ids."""
    im = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    im.putpalette(DAVIS_PALETTE + [0] * (768 - len(DAVIS_PALETTE)))
    with atomic_write(path) as f:
        f.write(_png_bytes(im))
    return path


def png_folder_paths(out: Path, video: str, exp_id: str, frame_names: Sequence[str]) -> list[Path]:
    return [out / video / exp_id / f"{n}.png" for n in frame_names]


def write_video_masks(out: str | Path, video: str, exp_id: str, frame_names: Sequence[str], masks: np.ndarray) -> None:
    """MeViS/ReVOS layout: one 0/255 PNG per listed frame (every frame, including empty ones)."""
    masks = np.asarray(masks, dtype=bool)
    if len(masks) != len(frame_names):
        raise MaskError(f"{video}/{exp_id}: {len(masks)} masks for {len(frame_names)} frames")
    for path, m in zip(png_folder_paths(Path(out), video, exp_id, frame_names), masks):
        write_mask_png(path, m)


def write_ytvos_submission(out: str | Path, video: str, exp_id: str, frame_names: Sequence[str], masks: np.ndarray) -> None:
    """Ref-YouTube-VOS server layout: `<out>/Annotations/<video>/<exp_id>/<frame>.png`; zip from `<out>`."""
    write_video_masks(Path(out) / "Annotations", video, exp_id, frame_names, masks)


def write_submission_zip(folder: str | Path, zip_path: str | Path, inner: str = "Annotations") -> Path:
    """Zip `<folder>/<inner>/...` with `inner/` at the archive root — the Ref-YouTube-VOS server layout (zip it from
    the folder that contains `Annotations`). Written atomically."""
    import zipfile

    folder, zip_path = Path(folder), Path(zip_path)
    base = folder / inner
    if not base.is_dir():
        raise FormatError(f"{base}: no predictions to zip")
    with atomic_write(zip_path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(base.rglob("*.png")):
            zf.write(p, p.relative_to(folder).as_posix())
    return zip_path


def read_video_masks(pred: str | Path, video: str, exp_id: str, frame_names: Sequence[str],
                     size: tuple[int, int]) -> np.ndarray | None:
    """Masks of one expression from a PNG folder; None if the video folder is absent (the official scripts score
    such an expression 0). A missing frame or a PNG at the wrong size is a FormatError naming the file."""
    pred = Path(pred)
    if not (pred / video).is_dir() and (pred / "Annotations" / video).is_dir():  # a Ref-YouTube-VOS submission folder
        pred = pred / "Annotations"
    if not (pred / video).is_dir():
        return None
    out = np.zeros((len(frame_names), *size), dtype=bool)
    for t, path in enumerate(png_folder_paths(pred, video, exp_id, frame_names)):
        if not path.is_file():
            raise FormatError(f"{path}: prediction for frame '{frame_names[t]}' is missing")
        labels = read_label_png(path)
        if labels.shape != tuple(size):
            raise FormatError(f"{path}: prediction is {labels.shape[1]}x{labels.shape[0]}, the ground truth "
                              f"{size[1]}x{size[0]} (predict at the original resolution)")
        out[t] = labels > 0
    return out


def write_refsav_json(path: str | Path, predictions: dict[str, dict[str, np.ndarray]]) -> Path:
    """Ref-SAV / Sa2VA prediction file from `{video: {exp_id: masks [T, H, W]}}`."""
    data = {vid: {exp: {"prediction_masks": mask_ops.rle_encode_many(np.asarray(m, bool))} for exp, m in exps.items()}
            for vid, exps in predictions.items()}
    return atomic_write_text(path, json.dumps(data))


def read_refsav_json(path: str | Path) -> dict[str, dict[str, list]]:
    """`{vid: {exp_id: [RLE per frame]}}` from a Sa2VA prediction JSON (decoded lazily by the scorer)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: cannot read prediction JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: must be an object keyed by video")
    out: dict[str, dict[str, list]] = {}
    for vid, exps in data.items():
        if not isinstance(exps, dict):
            raise FormatError(f"{path}: field '{vid}' must be an object keyed by expression id")
        for exp, rec in exps.items():
            if not isinstance(rec, dict) or not isinstance(rec.get("prediction_masks"), list):
                raise FormatError(f"{path}: missing field '{vid}.{exp}.prediction_masks'")
            out.setdefault(vid, {})[exp] = rec["prediction_masks"]
    return out


def write_davis_labels(out: str | Path, annotator: int, video: str, frame_names: Sequence[str], labels: np.ndarray) -> None:
    """ReferFormer Ref-DAVIS17 layout: `<out>/anno_<k>/<video>/<frame>.png`, indexed, ids 1..N."""
    for name, lab in zip(frame_names, np.asarray(labels)):
        write_label_png(Path(out) / f"anno_{annotator}" / video / f"{name}.png", lab)


def result_path(out: str | Path, key: str) -> Path:
    return Path(out) / f"{key}.json"


def write_result(out: str | Path, key: str, result: Result) -> Path:
    """One sample's prediction as a pixelwise result JSON (masks as RLE)."""
    return atomic_write_text(result_path(out, key), json.dumps(result.to_json()))


def read_result(out: str | Path, key: str) -> Result | None:
    """The saved result of a sample, or None if it was not predicted."""
    path = result_path(out, key)
    return Result.load(path) if path.is_file() else None


def write_videorefer_answers(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """VideoRefer's answer file: one JSON object per line with at least `Answer` (GT), `pred` and `type`."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_videorefer_answers(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}: line {n} is not JSON ({e})") from None
        for key in ("Answer", "pred"):
            if key not in row:
                raise FormatError(f"{path}: line {n} is missing field '{key}'")
        rows.append(row)
    return rows
