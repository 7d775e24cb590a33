"""SAM prompt encoder with the UniPixel extension: extra "hidden" tokens appended to the sparse prompt.

Sparse tokens: each point gets a random-Fourier encoding of its (x+0.5, y+0.5)/S position plus a learned type
embedding (label 0 negative, 1 positive, 2/3 box corners); label -1 ("not a point") gets only `not_a_point_embed`.
When points are given without a box, one not-a-point padding token is appended (so SAM2's "no click" call, which
passes one not-a-point, yields two of them). UniPixel then appends the LLM's prompt tokens. Dense prompt: either a
downscaled mask or the learned `no_mask_embed` broadcast over the feature map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixelwise.modules.sam2.common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised 2-D coordinates; the Gaussian matrix is a checkpoint buffer."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix.to(coords.dtype)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding `[C, h, w]` of the pixel centres of an h x w grid."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encoding `[B, N, C]` of pixel coordinates `[B, N, 2]` (x, y) in an image of `image_size` (h, w)."""
        norm = torch.stack([coords[..., 0] / image_size[1], coords[..., 1] / image_size[0]], dim=-1)
        return self._encode(norm.float())


class PromptEncoder(nn.Module):
    """Encodes points / boxes / masks / hidden tokens into sparse `[B, N, C]` and dense `[B, C, h, w]` prompts."""

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int], input_image_size: tuple[int, int],
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding `[1, C, h, w]` of the image-embedding grid (the decoder's key PE)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """`coords [B, N, 2]` (pixels of the S x S input), `labels [B, N]` -> `[B, N (+1 if pad), C]`."""
        coords = coords + 0.5  # pixel centre
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, torch.zeros_like(emb) + self.not_a_point_embed.weight, emb)
        for code, table in enumerate(self.point_embeddings):
            emb = emb + (labels == code).to(emb.dtype) * table.weight
        return emb

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """`boxes [B, 4]` (x0, y0, x1, y1 pixels) -> two corner tokens `[B, 2, C]`."""
        corners = boxes.reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        return torch.stack([emb[:, 0] + self.point_embeddings[2].weight[0],
                            emb[:, 1] + self.point_embeddings[3].weight[0]], dim=1)

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None = None, boxes: torch.Tensor | None = None,
                masks: torch.Tensor | None = None, hidden: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(sparse [B, N, C], dense [B, C, h, w])`; `hidden [B, n, C]` is appended after points/boxes."""
        batch = next(t.shape[0] for t in (hidden, points[0] if points else None, boxes, masks) if t is not None)
        dtype = self.no_mask_embed.weight.dtype
        parts = []
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        if hidden is not None:
            parts.append(hidden.to(dtype))
        sparse = torch.cat(parts, dim=1) if parts else self.no_mask_embed.weight.new_zeros(batch, 0, self.embed_dim)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse.to(dtype), dense
