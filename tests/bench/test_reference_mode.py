"""Reference mode (the straightforward way: per-`<|seg|>` re-encoding, one object at a time, all frames kept) gives
the same masks as the optimised pipeline while doing the work the optimisations remove (counted, not timed)."""

from __future__ import annotations

import numpy as np
import pytest

from pixelwise.bench.scripted import objects_answer, teacher_forced
from pixelwise.core.media import save_video
from pixelwise.core.results import MaskTrack, Result
from tests.conftest import make_frames


def _run(pipe, media, reference: bool, **kw):
    pipe.reference = reference
    pipe.model.sam2.encoded_frame_count = 0
    calls: list[int] = []
    hook = pipe.model.sam2.memory_attention.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    try:
        result = pipe.segment(media, "the squares", **kw)
    finally:
        hook.remove()
        pipe.reference = False
    return result, pipe.model.sam2.encoded_frame_count, calls


def test_three_objects_16_frames_same_masks_one_encoding_one_batch(pipe):
    clip = make_frames(16)
    with teacher_forced(pipe, objects_answer(3)):
        fast, fast_encoded, fast_batches = _run(pipe, clip, reference=False, num_frames=16)
        ref, ref_encoded, ref_batches = _run(pipe, clip, reference=True, num_frames=16)
    assert len(fast.objects) == len(ref.objects) == 3
    assert fast_encoded == 16 and ref_encoded == 48  # frames encoded once per query vs once per <|seg|>
    assert set(fast_batches) == {3} and set(ref_batches) == {1}  # objects tracked as one batch vs one by one
    assert len(ref_batches) == 3 * len(fast_batches)
    for a, b in zip(fast.objects, ref.objects):
        assert a.id == b.id and np.array_equal(a.masks, b.masks) and a.score == pytest.approx(b.score, abs=1e-5)
    assert any(o.masks.any() for o in fast.objects)  # the comparison is not between empty masks


@pytest.mark.slow
def test_propagate_all_streams_rle_tracks_equal_to_reference(pipe, tmp_path):
    video = tmp_path / "clip.mp4"
    save_video(video, make_frames(40), fps=10)
    with teacher_forced(pipe, objects_answer(2)):
        fast, fast_encoded, _ = _run(pipe, str(video), reference=False, num_frames=6, propagate="all")
        ref, ref_encoded, _ = _run(pipe, str(video), reference=True, num_frames=6, propagate="all")
    assert fast_encoded == 40 and ref_encoded == 80
    assert all(isinstance(o.masks, MaskTrack) for o in fast.objects)  # masks compressed as they are produced
    assert all(isinstance(o.masks, np.ndarray) for o in ref.objects)
    for a, b in zip(fast.objects, ref.objects):
        assert a.masks.shape == b.masks.shape == (40, 48, 64)
        assert np.array_equal(np.asarray(a.masks), b.masks)
        assert all(np.array_equal(a.masks[t], b.masks[t]) for t in range(0, 40, 7))
    # the JSON of a streamed result is the JSON of the dense one, and it reads back
    for a, b in zip(fast.to_json()["objects"], ref.to_json()["objects"]):
        assert a.pop("score") == pytest.approx(b.pop("score"), abs=1e-5)  # batched vs one object: float rounding
        assert a == b
    back = Result.from_json(fast.to_json())
    assert np.array_equal(back.objects[0].masks, np.asarray(fast.objects[0].masks))
    written = fast.save(tmp_path / "out")
    assert written["overlay"].name == "overlay.gif" and len(list((tmp_path / "out" / "masks").glob("*.png"))) == 80
