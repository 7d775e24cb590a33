"""Learnable feature upsampler: coarse patch-grid features -> dense per-pixel embeddings a mask query dots with.

Pixel-SAIL's only dense module (arXiv 2504.10465): k blocks of {2x2 stride-2 transposed conv, GELU, depth-wise 3x3 +
point-wise 1x1 conv, channel LayerNorm}, then a per-pixel MLP to the segmentation width. Decoder-free families
(Pixel-SAIL, VITRON's segmentation back-end here) share it: the number of blocks sets the output stride, which is the
main paper/release difference (paper: stride 4; released code: k = 1 + log2(P/4), i.e. stride P/8 = 2 for P=16).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixelwise.modules.sam2.common import LayerNorm2d


class UpsampleBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.act = nn.GELU()
        self.dw = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)
        self.pw = nn.Conv2d(channels, channels, kernel_size=1)
        self.norm = LayerNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pw(self.dw(self.act(self.up(x)))))


def blocks_for_stride(patch_size: int, output_stride: int) -> int:
    """Number of x2 blocks that take a stride-`patch_size` grid to `output_stride` (both powers of two)."""
    ratio = patch_size / output_stride
    k = round(math.log2(ratio)) if ratio >= 1 else -1
    if k < 0 or 2**k != ratio:
        raise ValueError(f"output stride {output_stride} is not patch size {patch_size} / 2^k")
    return k


class LearnableUpsampler(nn.Module):
    """[B, in_dim, h, w] -> [B, out_dim, h*2^k, w*2^k].

    `in_dim != channels` adds Pixel-SAIL's pre-projector (a 2-layer MLP, used there when d > 1024) so the blocks run
    at a fixed width whatever the LLM width is.
    """

    def __init__(self, in_dim: int, channels: int, out_dim: int, num_blocks: int):
        super().__init__()
        self.num_blocks = num_blocks
        self.pre = (nn.Identity() if in_dim == channels else
                    nn.Sequential(nn.Conv2d(in_dim, in_dim, 1), nn.GELU(), nn.Conv2d(in_dim, channels, 1)))
        self.blocks = nn.ModuleList(UpsampleBlock(channels) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU(), nn.Conv2d(channels, out_dim, 1))

    @property
    def scale(self) -> int:
        return 2**self.num_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def dot_product_masks(queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mask logits as the dot product of each query with every pixel embedding (no scaling, as Pixel-SAIL).

    queries [N, C], features [C, H, W] -> [N, H, W]; or batched per frame: features [T, C, H, W] -> [N, T, H, W].
    """
    if features.ndim == 3:
        return torch.einsum("nc,chw->nhw", queries, features)
    return torch.einsum("nc,tchw->nthw", queries, features)
