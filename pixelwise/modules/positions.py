"""Learned absolute 2-D positions for merged visual tokens (pixelwise's tiny, from-scratch models only).

Qwen2.5-VL's positions are all relative (2-D RoPE in the ViT, MRoPE in the LLM): rotary positions shape which tokens
attend to which, but no token's *value* says where it is, so a from-scratch LLM that gathers an object's features
cannot tell where that object lies (a pre-trained one learned to infer it from image content). A row and a column
embedding added to each visual token give it that location. Both tables start at zero, so a model built with them
computes what it did without them until training moves them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def positions_along(table: torch.Tensor, n: int) -> torch.Tensor:
    """The first n rows of a position table [L, D], or for n > L the table linearly resampled to n rows (first and
    last token keep the first and last row)."""
    if n <= table.shape[0]:
        return table[:n]
    return F.interpolate(table.T[None], size=n, mode="linear", align_corners=True)[0].T


def grid_positions(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Row table [L, D] + column table [L, D] -> the embedding of every cell of an h x w grid, [h * w, D] in raster
    order (`positions_along` each side)."""
    return (positions_along(rows, h)[:, None] + positions_along(cols, w)[None]).reshape(h * w, -1)


class GridPositions(nn.Module):
    """Row + column embeddings (`size` per side, width `dim`, zero at init) of an h x w token grid."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.rows = nn.Embedding(size, dim)
        self.cols = nn.Embedding(size, dim)
        nn.init.zeros_(self.rows.weight)
        nn.init.zeros_(self.cols.weight)

    def forward(self, h: int, w: int) -> torch.Tensor:
        """-> [h * w, dim] in raster order."""
        return grid_positions(self.rows.weight, self.cols.weight, h, w)
