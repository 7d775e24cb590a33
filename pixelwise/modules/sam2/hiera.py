"""Hiera trunk of SAM2 ("hieradet"): a hierarchical ViT with windowed attention and query pooling.

The trunk works channels-last (`[B, H, W, C]`). Stage transitions (the first block of stages 2..4) widen the channels
through a `proj` Linear on the normalised input and halve the resolution by 2x2 max-pooling the queries (and the
shortcut). Windows that do not divide the map are zero-padded and the padding takes part in attention, exactly as in
the official code (this matters at small resolutions, e.g. a 14-px window on an 8x8 map).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.modules.sam2.common import MLP, DropPath
from pixelwise.modules.sam2.config import Sam2Config


def _pool(x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
    """Apply a 2-D pooling to a channels-last map."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """`[B, H, W, C]` -> `[B * nW, window, window, C]` after zero-padding H and W up to multiples of `window`."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`, cropping the padding away."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp > h or wp > w) else x


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention on a channels-last map, optionally max-pooling the queries (stage transitions)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block of Hiera (windowed or global attention, optional q-pooling + widening)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float, drop_path: float,
                 q_stride: tuple[int, int] | None, window_size: int) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride, ceil_mode=False) if q_stride else None
        self.norm1 = norm(dim)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm(dim_out)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(self.proj(x), self.pool)
        window = self.window_size
        if window > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded_hw = window_partition(x, window)
        x = self.attn(x)
        if self.q_stride is not None:
            # After q-pooling the windows shrink; the unpartition must use the pooled window and map size.
            window = self.window_size // self.q_stride[0]
            hw = (shortcut.shape[1], shortcut.shape[2])
            padded_hw = (hw[0] + (window - hw[0] % window) % window if window > 0 else hw[0],
                         hw[1] + (window - hw[1] % window) % window if window > 0 else hw[1])
        if self.window_size > 0:
            x = window_unpartition(x, window, padded_hw, hw)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution, output channels-last."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """Hiera trunk; returns the output of every stage as `[B, C_i, H_i, W_i]`, shallowest (stride 4) first."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        stages = list(cfg.trunk_stages)
        depth = sum(stages)
        self.stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][: cfg.trunk_q_pool]
        embed_dim, num_heads = cfg.trunk_embed_dim, cfg.trunk_num_heads
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *cfg.trunk_window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, cfg.trunk_window_spec[0],
                                                         cfg.trunk_window_spec[0]))
        drop_rates = [cfg.trunk_drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear schedule
        blocks = []
        stage = 1
        for i in range(depth):
            dim_out = embed_dim
            # The window size lags one block: a stage's first block still uses the previous stage's window.
            window = cfg.trunk_window_spec[stage - 1]
            if i in cfg.trunk_global_att_blocks:
                window = 0
            if i - 1 in self.stage_ends:
                dim_out = int(embed_dim * cfg.trunk_dim_mul)
                num_heads = int(num_heads * cfg.trunk_head_mul)
                stage += 1
            blocks.append(MultiScaleBlock(embed_dim, dim_out, num_heads, cfg.trunk_mlp_ratio, drop_rates[i],
                                          cfg.trunk_q_stride if i in q_pool_blocks else None, window))
            embed_dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Background embedding resized (bicubic, fp32) to the map plus the tiled per-window embedding."""
        pos = F.interpolate(self.pos_embed.float(), size=(h, w), mode="bicubic")
        win = self.pos_embed_window.float()
        pos = pos + win.tile([1, 1, h // win.shape[2], w // win.shape[3]])
        return pos.permute(0, 2, 3, 1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
