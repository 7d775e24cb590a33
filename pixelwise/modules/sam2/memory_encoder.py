"""SAM2 memory encoder: fuses a frame's image embedding with its (scaled) predicted mask into a memory feature.

The mask (at the S x S input resolution, already mapped to `sigmoid(logit) * 20 - 10` by the caller) is brought down
to the embedding grid by strided convs (channels x4 each step), added to a 1x1 projection of the image embedding, mixed
by ConvNeXt-style blocks (the "fuser") and projected to `mem_dim`. The layer-scale of the fuser blocks is stored as
`weight` (UniPixel's naming; Meta's checkpoints call it `gamma`, renamed on load).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixelwise.modules.sam2.common import LayerNorm2d, sine_position_encoding_2d
from pixelwise.modules.sam2.config import Sam2Config


class MaskDownSampler(nn.Module):
    """Conv(stride s) + LayerNorm2d + GELU repeated log_s(total_stride) times, then a 1x1 conv to `embed_dim`."""

    def __init__(self, embed_dim: int, kernel_size: int, stride: int, padding: int, total_stride: int) -> None:
        super().__init__()
        num_layers = int(math.log2(total_stride) // math.log2(stride))
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(num_layers):
            c_out = c_in * stride**2
            layers += [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), LayerNorm2d(c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm2d, pointwise MLP (GELU), layer-scale, residual."""

    def __init__(self, dim: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.weight = nn.Parameter(1e-6 * torch.ones(dim))  # layer scale ("gamma" upstream)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.weight * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """Sequence of CXBlocks."""

    def __init__(self, dim: int, num_layers: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size, padding) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """`(pix_feat [B, C, h, w], mask_for_mem [B, 1, S, S])` -> `(memory [B, mem_dim, h, w], pos [1, mem_dim, h, w])`."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        c = cfg.hidden_dim
        self.mem_dim = cfg.mem_dim
        self.mask_downsampler = MaskDownSampler(c, cfg.mask_downsampler_kernel_size, cfg.mask_downsampler_stride,
                                                cfg.mask_downsampler_padding, cfg.mask_downsampler_total_stride)
        self.pix_feat_proj = nn.Conv2d(c, c, kernel_size=1)
        self.fuser = Fuser(c, cfg.fuser_num_layers, cfg.fuser_kernel_size, cfg.fuser_padding)
        self.out_proj = nn.Conv2d(c, cfg.mem_dim, kernel_size=1) if cfg.mem_dim != c else nn.Identity()

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        x = self.out_proj(self.fuser(x))
        pos = sine_position_encoding_2d(self.mem_dim, x.shape[-2], x.shape[-1], device=x.device, dtype=x.dtype)
        return x, pos
