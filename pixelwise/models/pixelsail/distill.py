"""Vision-expert distillation targets for Pixel-SAIL training: a frozen SAM2 image encoder's dense features.

Pixel-SAIL distils (i) SAM2's image embedding, resized to the patch grid, into Linear(d -> 256) of the LLM's patch
states, and (ii) Mask2Former's pixel-decoder features, resized to the upsampled grid, into Linear(512 -> 256) of the
upsampled features (each MSE, weight 0.5). Here the expert is the SAM2 encoder of a trained pixelwise UniPixel
checkpoint (`sam2.*` weights in its safetensors), and its stride-4 FPN level (after the mask decoder's `conv_s0`)
takes the place of the Mask2Former pixel-decoder features, which pixelwise does not ship.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pixelwise.core.checkpoint import load_safetensors
from pixelwise.core.errors import CheckpointError
from pixelwise.modules.patches import IMAGENET_MEAN, IMAGENET_STD
from pixelwise.modules.sam2 import Sam2Config, Sam2Model


def load_sam2_teacher(path: str | Path, config_path: str | Path | None = None):
    """The SAM2 part of a UniPixel checkpoint folder (config.json + model*.safetensors), frozen, in eval mode.

    `config_path` names the UniPixel config.json when the weights folder has none (a training run's step
    checkpoint, whose config lives in the run's model folder)."""

    path = Path(path)
    cfg_path = Path(config_path) if config_path is not None else path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: no config.json (expected a UniPixel checkpoint with a SAM2 part)")
    cfg = Sam2Config.from_unipixel_config(json.loads(cfg_path.read_text()))
    state: dict[str, torch.Tensor] = {}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no safetensors weights")
    for f in files:
        state.update({k[len("sam2."):]: v for k, v in load_safetensors(f).items() if k.startswith("sam2.")})
    if not state:
        raise CheckpointError(f"{path}: the checkpoint has no sam2.* weights")
    model = Sam2Model(cfg)
    model.load_official_state_dict(state)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def teacher_features(sam2, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [B, H, W, 3] -> (image embedding [B, C, S/16, S/16], stride-4 features [B, C/8, S/4, S/4])."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    s = sam2.image_size
    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats = sam2.encode_frames(x)
    return feats.embed, feats.high_res_s0


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE after resizing the teacher map [C, h', w'] to the student's [C, h, w] (bilinear)."""
    if tuple(teacher.shape[-2:]) != tuple(student.shape[-2:]):
        teacher = F.interpolate(teacher[None], size=student.shape[-2:], mode="bilinear", align_corners=False)[0]
    return F.mse_loss(student, teacher)
