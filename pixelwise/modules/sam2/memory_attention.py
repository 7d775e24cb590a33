"""SAM2 memory attention: conditions the current frame's image embedding on past masks and object pointers.

Each layer is pre-norm: RoPE self-attention over the frame tokens, RoPE cross-attention from the frame tokens to the
memory tokens (`kv_in_dim = mem_dim`), then a ReLU MLP. 2-D axial RoPE is applied to queries and to the spatial
memory keys (the per-frame RoPE table is repeated for every memory frame); the object-pointer tokens at the end of the
memory are excluded from RoPE. The frame's sine PE enters only once, scaled by 0.1, at the input; the memory PE is
added to the cross-attention keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.modules.sam2.config import Sam2Config
from pixelwise.modules.sam2.mask_decoder import Attention


def axial_rope_table(head_dim: int, height: int, width: int, theta: float, device: torch.device) -> torch.Tensor:
    """Complex rotations `[H*W, head_dim/2]`: first half rotate by the column index, second half by the row index."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim))
    t = torch.arange(height * width, dtype=torch.float32, device=device)
    t_x = t % width
    t_y = torch.div(t, width, rounding_mode="floor")
    ang_x, ang_y = torch.outer(t_x, freqs), torch.outer(t_y, freqs)
    return torch.cat([torch.polar(torch.ones_like(ang_x), ang_x), torch.polar(torch.ones_like(ang_y), ang_y)], -1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of `x [B, heads, N, D]`; `N` must be a multiple of the table length."""
    if x.shape[-2] == 0:
        return x
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    reps = xc.shape[-2] // table.shape[0]
    if reps != 1:
        table = table.repeat(reps, 1)
    return torch.view_as_real(xc * table).flatten(3).type_as(x)


class RoPEAttention(Attention):
    """Attention with axial RoPE on q and on the first `N_k - num_k_exclude_rope` keys."""

    def __init__(self, embedding_dim: int, num_heads: int, theta: float, dropout: float = 0.0,
                 kv_in_dim: int | None = None) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate=1, dropout=dropout, kv_in_dim=kv_in_dim)
        self.theta = theta

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, feat_hw: tuple[int, int] = (0, 0),
                num_k_exclude_rope: int = 0) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        table = axial_rope_table(q.shape[-1], feat_hw[0], feat_hw[1], self.theta, q.device)
        q = apply_rope(q, table)
        n_rope = k.shape[-2] - num_k_exclude_rope
        k = torch.cat([apply_rope(k[:, :, :n_rope], table), k[:, :, n_rope:]], dim=2)
        return self._attend(q, k, v)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attn / cross-attn-to-memory / MLP block with dropout (active only in training)."""

    def __init__(self, d_model: int, mem_dim: int, ff_dim: int, num_heads: int, dropout: float, theta: float) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, num_heads, theta, dropout=dropout)
        self.cross_attn_image = RoPEAttention(d_model, num_heads, theta, dropout=dropout, kv_in_dim=mem_dim)
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout_p = dropout

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout_p, self.training)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, feat_hw: tuple[int, int],
                num_k_exclude_rope: int) -> torch.Tensor:
        x = self.norm1(tgt)
        tgt = tgt + self._drop(self.self_attn(x, x, x, feat_hw))
        x = self.norm2(tgt)
        tgt = tgt + self._drop(self.cross_attn_image(x, memory + memory_pos, memory, feat_hw, num_k_exclude_rope))
        x = self.norm3(tgt)
        return tgt + self._drop(self.linear2(self._drop(F.relu(self.linear1(x)))))


class MemoryAttention(nn.Module):
    """Stack of memory-attention layers + final LayerNorm, batch-first (`[B, HW, C]`)."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(cfg.hidden_dim, cfg.mem_dim, cfg.memory_attention_ff_dim,
                                 cfg.memory_attention_num_heads, cfg.memory_attention_dropout,
                                 cfg.memory_attention_rope_theta)
            for _ in range(cfg.memory_attention_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                feat_hw: tuple[int, int], num_obj_ptr_tokens: int) -> torch.Tensor:
        """`curr [B, HW, C]`, `curr_pos [B or 1, HW, C]`, `memory / memory_pos [B, M, mem_dim]` -> `[B, HW, C]`."""
        out = curr + 0.1 * curr_pos
        for layer in self.layers:
            out = layer(out, memory, memory_pos, feat_hw, num_obj_ptr_tokens)
        return self.norm(out)
