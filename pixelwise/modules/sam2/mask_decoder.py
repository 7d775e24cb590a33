"""SAM2 mask decoder: a two-way transformer between prompt tokens and the image embedding, plus output heads.

Token layout fed to the transformer: `[obj_score, iou, mask_0..mask_3, sparse prompts...]`. Mask token 0 is the
single-mask output, tokens 1..3 the multimask candidates. Masks are produced at 4x the embedding resolution by two
transposed convs into which the stride-8 and stride-4 backbone features (after `conv_s1` / `conv_s0`) are added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.modules.sam2.common import MLP, LayerNorm2d


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections to an optionally down-sampled internal width."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, dropout: float = 0.0,
                 kv_in_dim: int | None = None) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the attention width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._attend(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v)))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attn -> token-to-image cross-attn -> MLP -> image-to-token cross-attn (post-norm each)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)  # replaces (not adds to) the input tokens
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of two-way blocks plus a final token-to-image attention."""

    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, downsample_rate, skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=downsample_rate)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


@dataclass
class MaskDecoderOutput:
    """Raw decoder outputs for a batch of B prompts (multimask: K = 3 candidates, else K = 1)."""

    masks: torch.Tensor  # [B, K, 4h, 4w] low-res mask logits
    iou_pred: torch.Tensor  # [B, K]
    sam_tokens: torch.Tensor  # [B, K, C] mask-token outputs (object-pointer source)
    object_score_logits: torch.Tensor  # [B, 1]
    iou_logits: torch.Tensor | None = None  # [B, K] before the sigmoid (a loss on them cannot saturate)


class MaskDecoder(nn.Module):
    """SAM2 mask decoder with high-res skip features, sigmoid IoU head and object-score head."""

    def __init__(self, transformer_dim: int, num_heads: int = 8, mlp_dim: int = 2048, depth: int = 2,
                 attention_downsample_rate: int = 2, num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        c = transformer_dim
        self.num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth, c, num_heads, mlp_dim, attention_downsample_rate)
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.obj_score_token = nn.Embedding(1, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens))
        # sigmoid applied in forward, so the logits stay available to the loss
        self.iou_prediction_head = MLP(c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)
        self.pred_obj_score_head = MLP(c, c, 1, 3)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt: torch.Tensor,
                dense_prompt: torch.Tensor, high_res_features: tuple[torch.Tensor, torch.Tensor],
                multimask_output: bool) -> MaskDecoderOutput:
        """`image_embeddings [B, C, h, w]` (one per prompt), `image_pe [1, C, h, w]`, `sparse_prompt [B, N, C]`,
        `dense_prompt [B, C, h, w]`, `high_res_features` = (stride-4 `[B, C/8, 4h, 4w]`, stride-8 `[B, C/4, 2h, 2w]`)."""
        b = sparse_prompt.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt], dim=1)
        src = image_embeddings + dense_prompt
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 1]
        mask_tokens_out = hs[:, 2: 2 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        hyper = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        iou_logits = self.iou_prediction_head(iou_token_out)
        iou_pred = torch.sigmoid(iou_logits)
        object_score_logits = self.pred_obj_score_head(hs[:, 0])

        sel = slice(1, None) if multimask_output else slice(0, 1)
        return MaskDecoderOutput(masks=masks[:, sel], iou_pred=iou_pred[:, sel], sam_tokens=mask_tokens_out[:, sel],
                                 object_score_logits=object_score_logits, iou_logits=iou_logits[:, sel])
