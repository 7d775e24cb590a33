"""PixelLM (Ren et al., CVPR 2024): a segmentation codebook read by a light multi-scale pixel decoder, no SAM.

Data flow of one query:
1. The Qwen2.5-VL vision tower encodes the frame; its merged tokens fill `<|video_pad|>` for the LLM, and the
   patch-level outputs of `vision_taps` blocks (deepest first) are kept as the decoder's visual scales:
   `out_mm_projector` (MLP Cv -> 2C -> C) and a shared `neck` (1x1 conv, LN2d, 3x3 conv, LN2d) -> [C, g, g] each.
2. The answer writes, after every target, the whole codebook group `[SEG0]..[SEG{S*n-1}]` (n = seg_token_num tokens for
   each of S = image_feature_scale_num scales). The hidden state *before* each `[SEGk]` (the state that predicts it,
   final-norm, LISA's convention) goes through `text_hidden_fcs` (d -> d -> C). Scale l of target t is
   e_{t,l} = sum_i w_{l,i} h_{t,l,i}.
3. Pixel decoder, coarse to fine: scale 0 runs a two-way transformer between [mask token, e_{t,0}] + level_embed(0)
   and the deep features (+ dense no-mask embedding, random-Fourier positional encoding), upscales x2 and takes a
   hypernetwork dot product -> m^0 at 2g. Scale l >= 1 upsamples its features by 2^l (transposed convs), modulates
   them with the previous mask, f * sigma(m^{l-1}) (paper) or f * (1 + sigma(m^{l-1})) (release), and decodes m^l at
   2^(l+1) g. Fusion: M = sum_l gamma_l resize(m^l).
4. Losses: text CE + 2.0 BCE + 0.5 Dice per mask + the target-refinement loss (BCE restricted to pixels that two or
   more of the question's predicted masks claim).

The SAM-style blocks (two-way transformer, MLP, LayerNorm2d, random-Fourier PE) are the shared ones of
`pixelwise.modules.sam2`; the trunk is `pixelwise.modules.vlm.QwenVL`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.core.errors import CheckpointError
from pixelwise.models.pixellm.configuration_pixellm import PixelLMConfig
from pixelwise.models.pixellm.processing_pixellm import PixelLMProcessor
from pixelwise.modules.checkpoint_io import build_model, load_weights, save_model_folder
from pixelwise.modules.losses import dice_loss
from pixelwise.modules.sam2.common import MLP, LayerNorm2d
from pixelwise.modules.sam2.mask_decoder import TwoWayTransformer
from pixelwise.modules.sam2.prompt_encoder import PositionEmbeddingRandom
from pixelwise.modules.vl_processing import Batch, Encoded
from pixelwise.modules.vlm import QwenVL, causal_mask


class PixelDecoder(nn.Module):
    """PixelLM's light multi-scale decoder: one two-way transformer per scale, mask-modulated coarse-to-fine."""

    def __init__(self, dim: int, num_scales: int, tokens_per_scale: int, depth: int, heads: int, mlp_dim: int,
                 learnable_fusion: bool, modulation: str):
        super().__init__()
        self.num_scales = num_scales
        self.modulation = modulation
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.no_mask_embed = nn.Parameter(torch.zeros(dim))
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.level_embed = nn.Parameter(torch.randn(num_scales, dim) * 0.02)
        self.transformers = nn.ModuleList(TwoWayTransformer(depth, dim, heads, mlp_dim) for _ in range(num_scales))
        # SAM maps 256 -> 32 mask channels; a tiny decoder keeps half its width, because a channel LayerNorm over a
        # handful of channels (dim / 8 = 2 at dim 16) flattens the map to +-1 and starves the transposed conv.
        mc = dim // 2
        self.upscale = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(dim, mc, 2, stride=2), LayerNorm2d(mc), nn.GELU())
            for _ in range(num_scales))
        self.hyper = nn.ModuleList(MLP(dim, dim, mc, 3) for _ in range(num_scales))
        # scale l's keys live at 2^l times the base grid (so m^{l-1}, at 2^l g, modulates them pixel for pixel)
        self.feature_up = nn.ModuleList(
            nn.Sequential(*[nn.ConvTranspose2d(dim, dim, 2, stride=2) for _ in range(level)])
            for level in range(num_scales))
        token_w = torch.full((num_scales, tokens_per_scale), 1.0 / tokens_per_scale)
        scale_w = torch.full((num_scales,), 1.0 / num_scales)
        if learnable_fusion:  # paper
            self.token_weights = nn.Parameter(token_w)
            self.scale_weights = nn.Parameter(scale_w)
        else:  # release: constants (its parameter list is never registered)
            self.register_buffer("token_weights", token_w)
            self.register_buffer("scale_weights", scale_w)

    def forward(self, features: list[torch.Tensor], codes: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """features: per scale [C, g, g] (deepest first); codes [N, S, n, C] projected codebook states ->
        (fused logits [N, 2^S g, 2^S g], per-scale logits)."""
        n = codes.shape[0]
        queries = (codes * self.token_weights[None, :, :, None]).sum(2)  # [N, S, C]
        per_scale: list[torch.Tensor] = []
        prev: torch.Tensor | None = None
        for level in range(self.num_scales):
            f = self.feature_up[level](features[level][None])  # [1, C, h, w]
            f = f.expand(n, -1, -1, -1)
            if prev is not None:
                gate = torch.sigmoid(F.interpolate(prev[:, None], size=f.shape[-2:], mode="bilinear",
                                                   align_corners=False))
                f = f * (1 + gate) if self.modulation == "one_plus_sigmoid" else f * gate
            h, w = f.shape[-2:]
            src = f + self.no_mask_embed[None, :, None, None]
            pe = self.pe_layer((h, w))[None].expand(n, -1, -1, -1).to(src.dtype)
            tokens = torch.stack([self.mask_token.expand(n, -1), queries[:, level]], 1) + self.level_embed[level]
            hs, keys = self.transformers[level](src, pe, tokens)
            up = self.upscale[level](keys.transpose(1, 2).reshape(n, -1, h, w))  # [N, C/2, 2h, 2w]
            hyper = self.hyper[level](hs[:, 0])  # [N, C/2]
            m = torch.einsum("nc,nchw->nhw", hyper, up)
            per_scale.append(m)
            prev = m
        size = per_scale[-1].shape[-2:]
        fused = sum(self.scale_weights[level] * F.interpolate(m[:, None], size=size, mode="bilinear",
                                                               align_corners=False)[:, 0]
                    for level, m in enumerate(per_scale))
        return fused, per_scale


@dataclass
class PixelLMOutput:
    loss: torch.Tensor
    parts: dict[str, float]
    logits: torch.Tensor  # [B, L, V]
    mask_logits: list[torch.Tensor]  # per item [K, H, W] at the ground-truth size


@dataclass
class PixelLMPrediction:
    generated_ids: list[int]
    groups: list[int]  # index into generated_ids of each target's [SEG0]
    mask_logits: torch.Tensor  # [K, H, W] at the original frame size
    scores: list[float] = field(default_factory=list)  # mean foreground probability inside each mask


def refinement_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PixelLM's target-refinement loss for the K masks of one question: BCE only on pixels that >= 2 predicted masks
    claim (logit > 0), mean over those masks' pixels (contested pixels thus weigh twice with the base BCE).

    logits, targets [K, H, W]; zero when K < 2 or nothing is contested.
    """
    if logits.shape[0] < 2:
        return logits.sum() * 0.0
    contested = ((logits.detach() > 0).sum(0) >= 2).to(logits.dtype)  # [H, W]
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * contested).flatten(1).mean(1).mean()


class PixelLMForSegmentation(nn.Module):
    def __init__(self, config: PixelLMConfig, seg_token_ids: list[int]):
        super().__init__()
        if len(seg_token_ids) != config.num_seg_tokens:
            raise CheckpointError(f"{len(seg_token_ids)} codebook token ids for {config.num_seg_tokens} tokens")
        self.config = config
        self.seg_token_ids = [int(i) for i in seg_token_ids]
        self.backbone = QwenVL(config.text, config.vision, config.vocab_size)
        d, c, cv = self.backbone.hidden_size, config.decoder_dim, int(config.vision["hidden_size"])
        self.out_mm_projector = nn.Sequential(nn.Linear(cv, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        self.neck = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), LayerNorm2d(c), nn.Conv2d(c, c, 3, padding=1,
                                  bias=False), LayerNorm2d(c))
        self.text_hidden_fcs = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, c))
        self.decoder = PixelDecoder(c, config.image_feature_scale_num, config.seg_token_num, config.decoder_depth,
                                    config.decoder_heads, config.decoder_mlp_dim, config.learnable_fusion,
                                    config.modulation)

    # ------------------------------------------------------------------ pieces

    def visual_scales(self, taps: dict[int, list[torch.Tensor]], item: int) -> list[torch.Tensor]:
        """Projected + neck features per scale for one item: [C, g, g] each (first frame pair)."""
        out = []
        for tap in self.config.vision_taps:
            x = self.out_mm_projector(taps[tap][item][0])  # [g, g, C]
            out.append(self.neck(x.permute(2, 0, 1)[None])[0])
        return out

    def codebook_states(self, ids: torch.Tensor, hidden: torch.Tensor, shift: int = 1) -> tuple[torch.Tensor, list[int]]:
        """ids [L], final-norm hidden [L, D] -> (states [K, S*n, D] for each complete group, group start positions).

        The state for `[SEGk]` is the hidden state of the position before it (`shift=1` over a teacher-forced
        sequence; `shift=0` over generated tokens, whose states are already the ones that predicted them). A group is `[SEG0]` followed by the
        rest of the codebook in order; incomplete groups are ignored (the release drops *all* masks in that case).
        """
        first, n = self.seg_token_ids[0], len(self.seg_token_ids)
        seg = torch.tensor(self.seg_token_ids, device=ids.device)
        starts = []
        for p in (ids == first).nonzero().flatten().tolist():
            if p >= shift and p + n <= len(ids) and torch.equal(ids[p:p + n], seg):
                starts.append(p)
        if not starts:
            return hidden.new_zeros(0, n, hidden.shape[-1]), []
        idx = torch.tensor([[p - shift + k for k in range(n)] for p in starts], device=ids.device)
        return hidden[idx], starts

    def decode_masks(self, scales: list[torch.Tensor], states: torch.Tensor) -> torch.Tensor:
        """states [K, S*n, D] -> fused mask logits [K, h, w] at the decoder's output grid."""
        cfg = self.config
        codes = self.text_hidden_fcs(states).view(states.shape[0], cfg.image_feature_scale_num, cfg.seg_token_num, -1)
        fused, _ = self.decoder(scales, codes)
        return fused

    def _hidden(self, batch: Batch, feats) -> torch.Tensor:
        embeds = self.backbone.embed_tokens(batch.input_ids).clone()
        vis = batch.input_ids == self._video_id
        embeds[vis] = feats.embeds.to(embeds.dtype)
        return self.backbone.run(embeds, batch.position_ids, batch.attention_mask)

    # ------------------------------------------------------------------ training

    def forward(self, batch: Batch, targets: list[torch.Tensor]) -> PixelLMOutput:
        """Teacher-forced loss. targets: per item float/bool [K, H, W] masks in answer order (K = number of groups)."""
        cfg = self.config
        feats = self.backbone.encode(batch.pixel_values, batch.grid_thw, taps=cfg.vision_taps)
        hidden = self._hidden(batch, feats)
        logits = self.backbone.lm_head(hidden)
        sup = batch.supervised[:, 1:]
        ce = (F.cross_entropy(logits[:, :-1][sup].float(), batch.input_ids[:, 1:][sup]) if bool(sup.any())
              else logits.sum() * 0.0)
        bce_terms, dice_terms, refine_terms, all_logits = [], [], [], []
        for i, gt in enumerate(targets):
            n = batch.lengths[i]
            states, starts = self.codebook_states(batch.input_ids[i, :n], hidden[i, :n])
            if len(starts) != gt.shape[0]:
                raise CheckpointError(f"batch item {i}: {len(starts)} codebook groups for {gt.shape[0]} target masks")
            if not starts:
                all_logits.append(hidden.new_zeros(0, *gt.shape[-2:]))
                continue
            m = self.decode_masks(self.visual_scales(feats.taps, i), states)
            m = F.interpolate(m[:, None], size=gt.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            t = gt.to(m.dtype)
            bce_terms.append(F.binary_cross_entropy_with_logits(m, t, reduction="none").flatten(1).mean(1))
            dice_terms.append(dice_loss(m, t))
            refine_terms.append(refinement_loss(m, t))
            all_logits.append(m)
        zero = logits.sum() * 0.0
        bce = torch.cat(bce_terms).mean() if bce_terms else zero
        dice = torch.cat(dice_terms).mean() if dice_terms else zero
        refine = torch.stack(refine_terms).mean() if refine_terms else zero
        loss = cfg.loss_text * ce + cfg.loss_bce * bce + cfg.loss_dice * dice + cfg.loss_refine * refine
        parts = {k: float(v.detach()) for k, v in (("ce", ce), ("bce", bce), ("dice", dice), ("refine", refine))}
        return PixelLMOutput(loss, parts, logits, all_logits)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def generate(self, enc: Encoded, processor, max_new_tokens: int = 96) -> PixelLMPrediction:
        """Greedy decoding with a KV cache. Once `[SEG0]` is produced the rest of the group is forced, so every
        target gets a complete group (the release drops all of an answer's masks when the count is off)."""
        cfg = self.config
        device = self.backbone.lm_head.weight.device
        feats = self.backbone.encode(enc.pixel_values.to(device), enc.grid_thw.to(device), taps=cfg.vision_taps)
        ids = enc.input_ids.to(device)
        embeds = self.backbone.embed_tokens(ids).clone()
        embeds[ids == self._video_id] = feats.embeds.to(embeds.dtype)
        rest = self.seg_token_ids[1:]
        out = self.backbone.generate(embeds[None], enc.position_ids[:, None].to(device),
                                     causal_mask(len(ids), device=device)[None, None], max_new_tokens,
                                     [processor.im_end_id], lambda t: rest if t == self.seg_token_ids[0] else ())
        new = torch.tensor(out.ids, dtype=torch.int64, device=device)
        # out.states[j] is the state that predicted new[j]: the "position before" rule with no shift
        states, starts = self.codebook_states(new, out.states, shift=0) if len(new) else (None, [])
        h, w = enc.frame_size
        if starts:
            m = self.decode_masks(self.visual_scales(feats.taps, 0), states)
            m = F.interpolate(m[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        else:
            m = torch.zeros(0, h, w, device=device)
        prob = m.sigmoid()
        fg = m > 0
        scores = [float(prob[k][fg[k]].mean()) if bool(fg[k].any()) else 0.0 for k in range(len(starts))]
        return PixelLMPrediction(out.ids, starts, m.cpu(), scores)

    # ------------------------------------------------------------------ files

    @property
    def _video_id(self) -> int:
        return self._video_token_id

    def set_token_ids(self, video_token_id: int) -> None:
        self._video_token_id = int(video_token_id)

    @classmethod
    def from_pretrained(cls, path: str | Path, processor=None) -> PixelLMForSegmentation:
        path = Path(path)
        config = PixelLMConfig.from_pretrained(path)
        processor = processor or PixelLMProcessor.from_pretrained(path)
        model = build_model(lambda: cls(config, processor.seg_token_ids), path)
        model.set_token_ids(processor.video_id)
        load_weights(model, path)
        return model.eval()

    def save_pretrained(self, path: str | Path, processor=None) -> Path:
        return save_model_folder(self, path, self.config, processor)
