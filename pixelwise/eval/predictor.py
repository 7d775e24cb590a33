"""`Predictor`: what the evaluation runner needs from a model — one `Result` per benchmark sample.

Any object with `predict(sample) -> Result` qualifies (a loaded pixelwise model wraps itself in one). The result's
masks must cover the sample's frames in order (`result.frame_indices` = positions 0..T−1 in `sample.frames`) at the
original resolution; for single-target benchmarks all returned objects are unioned, for MUSE each object is one
instance, for VideoRefer/PixelQA object i answers region i and `answer` carries the chosen option.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pixelwise.core.errors import FormatError
from pixelwise.core.results import Result, SegObject
from pixelwise.data.formats.sample import Sample


@runtime_checkable
class Predictor(Protocol):
    def predict(self, sample: Sample) -> Result: ...


class OraclePredictor:
    """Returns the ground truth: every benchmark must then score 100 (J&F, cIoU, accuracy). Use it to check that a
    dataset is read correctly before blaming a model."""

    def predict(self, sample: Sample) -> Result:
        objects = [SegObject(i, m) for i, m in enumerate(sample.gt_instances())]
        return Result(
            answer=sample.answer or "",
            objects=objects,
            frame_indices=list(range(sample.num_frames)),
            size=sample.size,
        )


def union_masks(result: Result, num_frames: int, size: tuple[int, int], key: str) -> np.ndarray:
    """All objects of a result unioned into bool [T, H, W]; checks that the result covers the sample's frames."""

    out = np.zeros((num_frames, *size), dtype=bool)
    if not result.objects:
        return out
    if result.num_frames != num_frames:
        raise FormatError(f"{key}: the prediction has {result.num_frames} frames, the sample {num_frames}")
    for o in result.objects:
        if o.masks.shape != out.shape:
            raise FormatError(f"{key}: object {o.id} masks are {o.masks.shape}, expected {out.shape}")
        out |= o.masks
    return out
