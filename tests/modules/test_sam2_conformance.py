"""SAM2 part of UniPixel against the official conformance vectors.

For every SAM2 run (`out.segK.*`) of every case, the recorded LLM prompt tokens and the case's SAM2 frames are fed to
`Sam2Model.encode_frames` + `track`; every recorded SAM2 tensor must match within the tolerance that `cases.json` lists
for it, and the thresholded masks may disagree on at most the listed fraction of pixels. The image-encoder debug
tensors are checked the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.modules.conftest import find_conformance_dir

# output field in the case file -> attribute of Sam2TrackOutput (object 0 of a batch of one)
TRACK_FIELDS = {
    "mask_logits": "mask_logits",
    "lowres_mask_logits": "lowres_mask_logits",
    "object_score_logits": "object_score_logits",
    "obj_ptr": "obj_ptr",
    "decoder_iou_pred": "decoder_iou_pred",
    "decoder_multimask_logits": "decoder_multimask_logits",
    "decoder_sparse_prompt_frame0": "sparse_prompt",
}


def _cases() -> list[dict]:
    d = find_conformance_dir()
    return json.loads((d / "cases.json").read_text())["cases"] if d else []


SAM2_CASES = [c["name"] for c in _cases() if c.get("num_seg", 0) > 0]
ENCODER_DEBUG_CASES = [c["name"] for c in _cases() if any(k.startswith("dbg.sam2_") for k in c.get("tensors", {}))]


def _case(name: str) -> dict:
    return next(c for c in _cases() if c["name"] == name)


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: dict) -> float:
    assert tuple(actual.shape) == tuple(expected.shape), f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.float() - expected.float()).abs()
    bound = tol["atol"] + tol["rtol"] * expected.float().abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    assert bool((diff <= bound).all()), f"{name}: max abs diff {worst:.3g} exceeds atol {tol['atol']} rtol {tol['rtol']}"
    return worst


def _frames(conformance_dir: Path, case: dict) -> torch.Tensor:
    media = load_file(str(conformance_dir / "media.safetensors"))
    return media[case["shared_media_keys"]["sam2_frames"]]


def test_conformance_has_sam2_runs() -> None:
    if find_conformance_dir() is None:
        pytest.skip("conformance vectors not available")
    # c, d, e (2 runs), g: a silent drop of cases would make the parametrised test vacuous
    assert sum(_case(n)["num_seg"] for n in SAM2_CASES) >= 5


@pytest.mark.parametrize("case_name", ENCODER_DEBUG_CASES)
def test_image_encoder_debug_tensors(case_name: str, conformance_dir: Path, sam2_model) -> None:
    case = _case(case_name)
    data = load_file(str(conformance_dir / case["file"]))
    frames = _frames(conformance_dir, case)
    with torch.no_grad():
        raw = sam2_model.image_encoder(frames[:1])
        feats = sam2_model.encode_frames(frames[:1])
    mine = {
        "dbg.sam2_image_encoder.fpn1_frame0": raw.backbone_fpn[1][0],
        "dbg.sam2_image_encoder.fpn2_frame0": raw.backbone_fpn[2][0],
        "dbg.sam2_image_encoder.pos2_frame0": raw.vision_pos_enc[2][0],
        "dbg.sam2_cached.fpn0_frame0": feats.high_res_s0[0],
        "dbg.sam2_cached.fpn1_frame0": feats.high_res_s1[0],
        "dbg.sam2_cached.fpn2_frame0": feats.embed[0],
    }
    recorded = [k for k in case["tensors"] if k.startswith("dbg.sam2_")]
    assert set(recorded) <= set(mine), f"unchecked debug tensors: {set(recorded) - set(mine)}"
    for key in recorded:
        _assert_close(key, mine[key], data[key], case["tensors"][key]["tolerance"])


@pytest.mark.parametrize("case_name", SAM2_CASES)
def test_track_matches_official(case_name: str, conformance_dir: Path, sam2_model) -> None:
    case = _case(case_name)
    data = load_file(str(conformance_dir / case["file"]))
    frames = _frames(conformance_dir, case)
    frame_size = tuple(int(v) for v in data["in.frame_size"])
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
    for k in range(case["num_seg"]):
        prefix = f"out.seg{k}."
        with torch.no_grad():
            out = sam2_model.track(feats, data[prefix + "prompt_tokens"][None], frame_size=frame_size, cond_frame=0)
        for field, attr in TRACK_FIELDS.items():
            key = prefix + field
            _assert_close(key, getattr(out, attr)[0], data[key], case["tensors"][key]["tolerance"])
        expected_masks = data[prefix + "masks"]
        assert out.masks.dtype == torch.bool and tuple(out.masks[0].shape) == tuple(expected_masks.shape)
        mismatch = (out.masks[0] != expected_masks).float().mean().item()
        assert mismatch <= case["tensors"][prefix + "masks"]["tolerance"]["max_mismatch_fraction"], (
            f"{prefix}masks: {mismatch:.4%} of pixels differ")


def test_video_case_exercises_absent_object(conformance_dir: Path) -> None:
    """The video vectors must contain a frame with object score <= 0 (no-object masking / no_obj_ptr path)."""
    data = load_file(str(conformance_dir / _case("d_video_seg_teacher_forced")["file"]))
    scores = data["out.seg0.object_score_logits"]
    assert (scores <= 0).any() and (scores > 0).any()
    assert (data["out.seg0.lowres_mask_logits"][scores <= 0] == -1024.0).all()
