"""SAM2 image encoder = Hiera trunk + FPN neck (+ sine positional encodings per level).

The neck projects every trunk stage to `hidden_dim` with a 1x1 conv (`convs.0` is the deepest stage), adds a
nearest-upsampled top-down path only into the levels listed in `fpn_top_down_levels`, and `scalp` drops the coarsest
levels afterwards. With the SAM 2.1 settings the output is three levels at strides 4, 8, 16; the stride-16 level is the
"image embedding" the decoder and the memory work on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.modules.sam2.common import sine_position_encoding_2d
from pixelwise.modules.sam2.config import Sam2Config
from pixelwise.modules.sam2.hiera import Hiera


@dataclass
class ImageEncoderOutput:
    """FPN levels (shallowest first, `[B, hidden_dim, H_i, W_i]`) and their sine encodings (`[1, hidden_dim, H_i, W_i]`)."""

    backbone_fpn: list[torch.Tensor]
    vision_pos_enc: list[torch.Tensor]


class _LateralConv(nn.Module):
    """Holder so the parameter names read `convs.N.conv.*` like the official checkpoints."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid over the trunk stages with a partial top-down path."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.d_model = cfg.hidden_dim
        self.convs = nn.ModuleList(_LateralConv(c, cfg.hidden_dim) for c in cfg.backbone_channel_list)
        self.top_down_levels = set(cfg.fpn_top_down_levels)
        self.interp_mode = cfg.fpn_interp_model

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [xs[0]] * (n + 1)
        pos: list[torch.Tensor] = [xs[0]] * (n + 1)
        prev: torch.Tensor | None = None
        for i in range(n, -1, -1):  # deepest level first
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                top_down = F.interpolate(prev.float(), scale_factor=2.0, mode=self.interp_mode,
                                         align_corners=None if self.interp_mode == "nearest" else False)
                prev = lateral + top_down.to(lateral.dtype)
            else:
                prev = lateral
            out[i] = prev
            pos[i] = sine_position_encoding_2d(self.d_model, prev.shape[-2], prev.shape[-1], device=prev.device,
                                               dtype=prev.dtype)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; returns the kept FPN levels (after `scalp`) and their positional encodings."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.trunk = Hiera(cfg)
        if list(self.trunk.channel_list) != list(cfg.backbone_channel_list):
            raise ValueError(f"trunk channels {self.trunk.channel_list} != neck backbone_channel_list "
                             f"{list(cfg.backbone_channel_list)}")
        self.neck = FpnNeck(cfg)
        self.scalp = cfg.scalp

    def forward(self, images: torch.Tensor) -> ImageEncoderOutput:
        features, pos = self.neck(self.trunk(images))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return ImageEncoderOutput(backbone_fpn=list(features), vision_pos_enc=list(pos))
