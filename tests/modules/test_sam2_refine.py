"""`Sam2Config.mask_refiner` (tiny only): a learned upsampler of SAM2's mask logits that reads the frame."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from pixelwise.modules.sam2 import Sam2Model
from pixelwise.modules.sam2.common import resize_logits
from pixelwise.modules.sam2.features import Sam2FrameFeatures
from pixelwise.modules.sam2.refine import MaskRefiner
from tests.modules.test_sam2_model import video  # noqa: F401 (fixture)


def test_a_grown_refiner_starts_as_the_bilinear_upsampling_and_needs_the_pixels(sam2_model: Sam2Model,
                                                                                  video) -> None:  # noqa: F811
    frames, prompts, size = video
    grown = Sam2Model(dataclasses.replace(sam2_model.cfg, mask_refiner=8)).eval()
    missing, unexpected = grown.load_state_dict(sam2_model.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("mask_refiner.") for k in missing)
    assert sam2_model.cfg.mask_refiner == 0 and not hasattr(sam2_model, "mask_refiner")  # official: none
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
        before = sam2_model.track(feats, prompts, frame_size=size)
        after = grown.track(grown.encode_frames(frames), prompts, frame_size=size)
        assert torch.allclose(before.mask_logits, after.mask_logits, atol=1e-4)
        blind = [Sam2FrameFeatures(f.embed, f.high_res_s0, f.high_res_s1, f.pos) for f in feats]
        with pytest.raises(ValueError, match="refines its masks with the frame's pixels"):
            grown.track(blind, prompts, frame_size=size)


def _discs(n: int, s: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n frames [n, 3, s, s] with one coloured disc each on a grey background, the discs [n, s, s] and what a
    perfect decoder at a quarter of the size says about them (logits of their coverage) [n, 1, s/4, s/4]."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
    frames, masks = [], []
    for _ in range(n):
        cx, cy = (torch.rand(2, generator=g) * 0.5 + 0.25) * s
        r = float(torch.rand(1, generator=g) * s / 10 + s / 16)
        disc = ((xs - cx) ** 2 + (ys - cy) ** 2 <= r * r).float()
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        frames.append(disc * colour + (1 - disc) * 0.1)
        masks.append(disc)
    masks_t = torch.stack(masks)
    cover = F.avg_pool2d(masks_t[:, None], 4).clamp(1e-3, 1 - 1e-3)
    return torch.stack(frames), masks_t, torch.log(cover / (1 - cover))


def _iou(logits: torch.Tensor, masks: torch.Tensor) -> float:
    p, t = logits[:, 0] > 0, masks > 0.5
    return float(((p & t).flatten(1).sum(1) / (p | t).flatten(1).sum(1)).mean())


def test_the_refiner_learns_the_outline_that_the_pixels_show() -> None:
    torch.manual_seed(0)
    train, test = _discs(24, 64, 0), _discs(12, 64, 1)
    refiner = MaskRefiner(16)
    bilinear = _iou(resize_logits(test[2], (64, 64)), test[1])
    refine = lambda m: resize_logits(m[2], (64, 64)) + refiner(m[2], m[0])  # noqa: E731 (as Sam2Model.output_logits)
    assert math.isclose(_iou(refine(test), test[1]), bilinear, abs_tol=1e-6)  # zero at init
    opt = torch.optim.Adam(refiner.parameters(), 3e-3)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(refine(train)[:, 0], train[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        refined = _iou(refine(test), test[1])
    assert bilinear < 0.92 and refined > bilinear + 0.04, (bilinear, refined)
