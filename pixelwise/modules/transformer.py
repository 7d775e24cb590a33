"""A small decoder-only transformer with multi-axis rotary positions, prefix-bidirectional masks and a KV cache.

Shared by the families that run their own LLM blocks rather than a transformers model:

* Pixel-SAIL's *single transformer* (patch embeddings go straight into the token sequence, the image block attends
  bidirectionally, positions are (t, y, x) M-RoPE-style ids);
* VITRON's router front end (the same decoder, plus a bidirectional stack used as its vision encoder).

The block layout is Qwen2's (RMSNorm, grouped-query attention with rotary embeddings, SwiGLU MLP) so that the
parameter names and the maths read like a Qwen2 decoder; it is written here because the families need a 3-axis
rotary split and a per-sample "these positions see each other" mask, which a stock causal LM hides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecoderConfig:
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 352
    rope_theta: float = 10000.0
    # rotary frequency pairs given to each position axis (t, y, x); must sum to head_dim // 2. Text tokens carry the
    # same id on every axis, so for them this is ordinary 1-D RoPE.
    rope_sections: tuple[int, int, int] = (0, 8, 8)
    rms_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"hidden_size {self.hidden_size} / heads {self.num_heads} / kv heads "
                             f"{self.num_kv_heads} do not divide")
        if sum(self.rope_sections) != self.head_dim // 2:
            raise ValueError(f"rope_sections {self.rope_sections} must sum to head_dim/2 = {self.head_dim // 2}")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(position_ids: torch.Tensor, head_dim: int, theta: float, sections: Sequence[int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids long [3, B, L] -> (cos, sin) float [B, L, head_dim]; frequency pair j rotates by the axis that
    `sections` assigns it (the first sections[0] pairs by t, the next sections[1] by y, the rest by x)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32)
                                / head_dim))
    axis = torch.repeat_interleave(torch.arange(3, device=position_ids.device),
                                   torch.tensor(list(sections), device=position_ids.device))
    pos = position_ids.float()  # [3, B, L]
    chosen = pos[axis]  # [hd/2, B, L]
    freqs = chosen.permute(1, 2, 0) * inv_freq  # [B, L, hd/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * hd, bias=True)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(cfg.num_heads * hd, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, n, _ = x.shape
        hd, h, kv = self.cfg.head_dim, self.cfg.num_heads, self.cfg.num_kv_heads
        q = self.q_proj(x).view(b, n, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, n, kv, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, n, kv, hd).transpose(1, 2)
        c, s = cos[:, None], sin[:, None]
        q = q * c + _rotate_half(q) * s
        k = k * c + _rotate_half(k) * s
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        new_cache = (k, v)
        if kv != h:
            k = k.repeat_interleave(h // kv, dim=1)
            v = v.repeat_interleave(h // kv, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, h * hd)), new_cache


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, cache):
        a, new_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        x = x + a
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), new_cache


KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class Decoder(nn.Module):
    """The block stack. `forward(inputs_embeds, position_ids, mask, cache)`; the caller owns embeddings and heads."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """inputs_embeds [B, L, d]; position_ids long [3, B, L]; mask bool [B, 1, L, L_total] (True = may attend)
        or None (everything sees everything); cache from a previous call (its keys come first)."""
        cos, sin = rotary_tables(position_ids, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.rope_sections)
        cos, sin = cos.to(inputs_embeds.dtype), sin.to(inputs_embeds.dtype)
        x = inputs_embeds
        new_cache: KVCache = []
        for i, layer in enumerate(self.layers):
            x, c = layer(x, cos, sin, mask, None if cache is None else cache[i])
            new_cache.append(c)
        return self.norm(x), new_cache


def prefix_lm_mask(lengths: Sequence[int], total: int, bidirectional: Sequence[tuple[int, int] | None],
                   device: torch.device | None = None) -> torch.Tensor:
    """bool [B, 1, L, L]: causal attention over each sample's first `lengths[b]` tokens (padding attends to itself
    only, so no row is empty), plus full attention inside the span `bidirectional[b] = (start, end)` (the image
    block), as in Pixel-SAIL's prefix mask."""
    idx = torch.arange(total, device=device)
    causal = idx[None, :] <= idx[:, None]
    masks = []
    for n, span in zip(lengths, bidirectional):
        m = causal.clone()
        if span is not None:
            s, e = span
            m[s:e, s:e] = True
        m[:, n:] = False
        m[n:, :] = False
        m[idx[n:], idx[n:]] = True
        masks.append(m)
    return torch.stack(masks)[:, None]


def text_positions(start: int, count: int, device: torch.device | None = None) -> torch.Tensor:
    """long [3, count]: the same running id on every axis (1-D RoPE for text)."""
    p = torch.arange(start, start + count, device=device)
    return p[None].expand(3, count)


def grid_positions(start: int, height: int, width: int, t: int = 0, device: torch.device | None = None
                   ) -> torch.Tensor:
    """long [3, h*w]: (t, y, x) ids of a row-major patch grid offset by `start` (t offset by start too)."""
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    return torch.stack([torch.full_like(ys, start + t), start + ys, start + xs])
