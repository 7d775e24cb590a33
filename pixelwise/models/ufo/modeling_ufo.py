"""UFO (Tang et al., NeurIPS 2025): segmentation as embedding retrieval, boxes as text, no task decoder.

Data flow of one query:
1. The Qwen2.5-VL vision tower fills `<|video_pad|>`; the LLM runs with image tokens attending to each other
   bidirectionally (`bidirectional_image`, the paper's non-VQA attention) and causal attention elsewhere.
2. Masks by retrieval: for a group of N^2 `<MASK>` tokens take, for each, the final-norm hidden state of the position
   *before* it (the state that predicts it) e_i in R^d, and the final-norm hidden states of the image tokens
   h_v in R^{h x w x d}: s_i = e_i . h_v^T / sqrt(d). The N^2 maps are interleaved into one map at N x resolution,
   S[N y + a, N x + b] = s_{N a + b}[y, x] (`pixel_shuffle`), bilinearly resized to the frame, threshold 0.
3. Boxes are text on an integer grid; nothing but the LM head produces them.
4. Parallel decoding for "all objects of a kind": a K x K grid of local tokens, each the bilinear sample of the image
   embeddings at its grid point (and, at every layer > 0, incremented by the sample of that layer's image states:
   the paper's layer-wise re-injection); every grid point decodes its own sub-sequence in lock-step.
5. Losses: text CE + sigmoid focal (alpha 0.25, gamma 2, mean per pixel) + dice, weights 1 : 1 : 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.models.ufo.configuration_ufo import UFOConfig
from pixelwise.models.ufo.processing_ufo import UFOProcessor, grid_points
from pixelwise.modules.checkpoint_io import build_model, load_weights, save_model_folder
from pixelwise.modules.losses import dice_loss, sigmoid_focal_loss
from pixelwise.modules.positions import GridPositions
from pixelwise.modules.vl_processing import Batch, Encoded
from pixelwise.modules.vlm import QwenVL


@dataclass
class UFOOutput:
    loss: torch.Tensor
    parts: dict[str, float]
    logits: torch.Tensor
    mask_logits: list[torch.Tensor]


@dataclass
class UFOPrediction:
    generated_ids: list[int]
    mask_logits: torch.Tensor  # [K, H, W] at the original frame size
    scores: list[float] = field(default_factory=list)


@dataclass
class GridDetection:
    """One grid point's answer in parallel decoding."""

    point: tuple[float, float]
    ids: list[int]
    score: float  # probability of the first token (`<box>`)
    mask_logits: torch.Tensor | None  # [H, W] at the original size, or None without a full <MASK> group


def mask_groups(ids: torch.Tensor, mask_id: int, n: int) -> list[int]:
    """Start positions of complete groups of `n` consecutive `<MASK>` (a longer run is split into groups)."""
    starts, run = [], 0
    for p, t in enumerate(ids.tolist()):
        if t == mask_id:
            run += 1
            if run == n:
                starts.append(p - n + 1)
                run = 0
        else:
            run = 0
    return starts


def sample_grid(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """features [h, w, D], points [M, 2] (x, y) in [0, 1] -> bilinear samples [M, D]."""
    grid = (points * 2 - 1).view(1, 1, -1, 2).to(features.dtype)
    out = F.grid_sample(features.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False)
    return out[0, :, 0].transpose(0, 1)


class UFOForConditionalGeneration(nn.Module):
    def __init__(self, config: UFOConfig, token_ids: dict[str, int]):
        super().__init__()
        self.config = config
        self.token_ids = {k: int(v) for k, v in token_ids.items()}  # video, mask, local, im_end, box_start
        self.backbone = QwenVL(config.text, config.vision, config.vocab_size)
        self.visual_pos = (GridPositions(config.vision_abs_pos, self.backbone.hidden_size) if config.vision_abs_pos
                           else None)

    @property
    def device(self) -> torch.device:
        return self.backbone.lm_head.weight.device

    # ------------------------------------------------------------------ pieces

    def _image_grid(self, hidden: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Hidden states [L, D] -> image-token states of the first frame pair as [h, w, D]."""
        h, w = enc.merged_grid
        s, _ = enc.image_span
        return hidden[s:s + h * w].view(h, w, -1)

    def retrieve(self, states: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Mask-token states [G, N^2, D] and image states [h, w, D] -> mask logits [G, N h, N w]."""
        d = image.shape[-1]
        s = torch.einsum("gnd,hwd->gnhw", states, image) / math.sqrt(d)
        return F.pixel_shuffle(s, self.config.upsample)[:, 0]

    def _masks_of(self, ids: torch.Tensor, hidden: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, list[int]]:
        n = self.config.num_mask_tokens
        starts = mask_groups(ids, self.token_ids["mask"], n)
        if not starts:
            return hidden.new_zeros(0, *(v * self.config.upsample for v in enc.merged_grid)), []
        idx = torch.tensor([[p - 1 + k for k in range(n)] for p in starts], device=hidden.device)
        return self.retrieve(hidden[idx], self._image_grid(hidden, enc)), starts

    def _embed(self, batch: Batch, items: list[Encoded], feats=None) -> torch.Tensor:
        """Token embeddings with the visual tokens and the local tokens (grid samples of the image embeddings)."""
        if feats is None:
            feats = self.backbone.encode(batch.pixel_values.to(self.device), batch.grid_thw.to(self.device))
        if self.visual_pos is not None:
            pos = torch.cat([self.visual_pos(h, w).repeat(t, 1) for t, h, w in feats.grids])
            feats = dataclasses.replace(feats, embeds=feats.embeds + pos.to(feats.embeds.dtype))
        ids = batch.input_ids.to(self.device)
        embeds = self.backbone.embed_tokens(ids).clone()
        embeds[ids == self.token_ids["video"]] = feats.embeds.to(embeds.dtype)
        per_item = feats.split()
        for i, e in enumerate(items):
            if e.local_positions:
                h, w = e.merged_grid
                grid = per_item[i][: h * w].view(h, w, -1)
                embeds[i, e.local_positions] = sample_grid(grid, e.local_points.to(self.device)).to(embeds.dtype)
        return embeds

    def _run(self, batch: Batch, items: list[Encoded], feats=None) -> torch.Tensor:
        """Embeddings -> LLM (with the layer-wise re-injection into local tokens) -> final-norm hidden [B, L, D]."""
        embeds = self._embed(batch, items, feats)
        locals_ = [(i, e.local_positions, e.local_points.to(self.device), e.image_span, e.merged_grid)
                   for i, e in enumerate(items) if e.local_positions]
        hook = None
        if locals_ and self.config.grid_reinject:
            def hook(layer: int, hs: torch.Tensor) -> torch.Tensor:
                if layer == 0:
                    return hs
                adds = [sample_grid(hs[i, s:s + h * w].reshape(h, w, -1), pts) for i, _, pts, (s, _), (h, w) in locals_]
                out = hs.clone()  # samples are taken from the layer's input before any local token changes
                for (i, pos, *_), add in zip(locals_, adds):
                    out[i, pos] = hs[i, pos] + add
                return out
        return self.backbone.run(embeds, batch.position_ids.to(self.device), batch.attention_mask.to(self.device),
                                 layer_hook=hook)

    # ------------------------------------------------------------------ training

    def forward(self, batch: Batch, items: list[Encoded], targets: list[torch.Tensor]) -> UFOOutput:
        """Teacher-forced loss; targets per item [K, H, W] in `<MASK>`-group order (sub-sequence order when packed)."""
        cfg = self.config
        hidden = self._run(batch, items)
        logits = self.backbone.lm_head(hidden)
        ids = batch.input_ids.to(self.device)
        sup = batch.supervised.to(self.device)[:, 1:]
        ce = (F.cross_entropy(logits[:, :-1][sup].float(), ids[:, 1:][sup]) if bool(sup.any())
              else logits.sum() * 0.0)
        focal_terms, dice_terms, out_masks = [], [], []
        for i, (e, gt) in enumerate(zip(items, targets)):
            n = batch.lengths[i]
            m, starts = self._masks_of(ids[i, :n], hidden[i, :n], e)
            if len(starts) != gt.shape[0]:
                raise ValueError(f"batch item {i}: {len(starts)} <MASK> groups for {gt.shape[0]} target masks")
            if not starts:
                out_masks.append(m)
                continue
            m = F.interpolate(m[:, None], size=gt.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            t = gt.to(m.dtype).to(m.device)
            focal_terms.append(sigmoid_focal_loss(m, t))
            dice_terms.append(dice_loss(m, t))
            out_masks.append(m)
        zero = logits.sum() * 0.0
        focal = torch.cat(focal_terms).mean() if focal_terms else zero
        dice = torch.cat(dice_terms).mean() if dice_terms else zero
        loss = cfg.loss_text * ce + cfg.loss_focal * focal + cfg.loss_dice * dice
        parts = {k: float(v.detach()) for k, v in (("ce", ce), ("focal", focal), ("dice", dice))}
        return UFOOutput(loss, parts, logits, out_masks)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def generate(self, enc: Encoded, processor, max_new_tokens: int = 96) -> UFOPrediction:
        """Greedy autoregressive answer with a KV cache; after a first `<MASK>` the rest of its group is forced (the
        paper uses the first N^2 generated `<MASK>` states and returns no mask when fewer are produced)."""
        n = self.config.num_mask_tokens
        batch = processor.collate([enc], bidirectional_image=self.config.bidirectional_image)
        embeds = self._embed(batch, [enc])
        mask_id = self.token_ids["mask"]
        out = self.backbone.generate(embeds, batch.position_ids.to(self.device), batch.attention_mask.to(self.device),
                                     max_new_tokens, [self.token_ids["im_end"]],
                                     lambda t: [mask_id] * (n - 1) if t == mask_id else ())
        ids = torch.tensor(out.ids, dtype=torch.int64)
        starts = mask_groups(ids, mask_id, n)
        h, w = enc.frame_size
        if starts:
            idx = torch.tensor([[p + k for k in range(n)] for p in starts], device=self.device)
            m = self.retrieve(out.states[idx], self._image_grid(out.prefill, enc))
            m = F.interpolate(m[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        else:
            m = torch.zeros(0, h, w, device=self.device)
        prob, fg = m.sigmoid(), m > 0
        scores = [float(prob[k][fg[k]].mean()) if bool(fg[k].any()) else 0.0 for k in range(len(m))]
        return UFOPrediction(out.ids, m.cpu(), scores)

    @torch.no_grad()
    def generate_grid(self, enc: Encoded, processor) -> list[GridDetection]:
        """Parallel decoding: all K x K grid sub-sequences advance one token per forward (lock-step)."""

        cfg = self.config
        n = cfg.num_mask_tokens
        pts = grid_points(cfg.grid_size)
        m = len(pts)
        answers: list[list[int]] = [[] for _ in range(m)]
        done = [False] * m
        forced: list[list[int]] = [[] for _ in range(m)]
        first_prob = [0.0] * m
        packed, hidden = None, None
        feats = self.backbone.encode(enc.pixel_values.to(self.device), enc.grid_thw.to(self.device))
        for step in range(cfg.grid_max_steps + 1):
            packed = processor.pack(enc, answers, pts)
            batch = processor.collate([packed])
            hidden = self._run(batch, [packed], feats)[0]
            if all(done) or step == cfg.grid_max_steps:
                break
            for k, (s, e) in enumerate(packed.subsequences):
                if done[k]:
                    continue
                if forced[k]:
                    tok = forced[k].pop(0)
                else:
                    probs = self.backbone.lm_head(hidden[e - 1]).float().softmax(-1)
                    tok = int(probs.argmax())
                    if step == 0:
                        first_prob[k] = float(probs[tok]) if tok != self.token_ids["im_end"] else 1 - float(probs[tok])
                    if tok == self.token_ids["mask"]:
                        forced[k] = [tok] * (n - 1)
                answers[k].append(tok)
                if tok == self.token_ids["im_end"] and not forced[k]:
                    done[k] = True
        h, w = enc.frame_size
        image = self._image_grid(hidden, enc)
        out = []
        for k, (s, e) in enumerate(packed.subsequences):
            ids = packed.input_ids[s:e]
            if not answers[k] or answers[k][0] == self.token_ids["im_end"]:
                continue
            starts = mask_groups(ids, self.token_ids["mask"], n)
            mask = None
            if starts:
                p = s + starts[0]
                states = hidden[p - 1:p - 1 + n][None]
                mask = F.interpolate(self.retrieve(states, image)[:, None].float(), size=(h, w), mode="bilinear",
                                     align_corners=False)[0, 0].cpu()
            out.append(GridDetection((float(pts[k, 0]), float(pts[k, 1])), answers[k], first_prob[k], mask))
        return out

    # ------------------------------------------------------------------ files

    @classmethod
    def from_pretrained(cls, path: str | Path, processor=None) -> UFOForConditionalGeneration:
        config = UFOConfig.from_pretrained(path)
        processor = processor or UFOProcessor.from_pretrained(path)
        model = build_model(lambda: cls(config, token_ids_of(processor)), path)
        load_weights(model, path)
        return model.eval()

    def save_pretrained(self, path: str | Path, processor=None) -> Path:
        return save_model_folder(self, path, self.config, processor)


def token_ids_of(processor) -> dict[str, int]:
    return {"video": processor.video_id, "mask": processor.mask_id, "local": processor.local_id,
            "im_end": processor.im_end_id, "box_start": processor.box_start_id}
