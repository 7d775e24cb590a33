"""Pixel-SAIL: a single transformer over raw image patches and text, a learnable upsampler, and `[SEG]` masks.

Mechanisms (arXiv 2504.10465; shapes for one image with an h x w patch grid, LLM width d, seg width C):
* **No vision encoder.** Each P x P patch (3*P*P values) -> `patch_embed` (Linear, no bias) -> d, *added* to the
  `<|image_pad|>` token embedding. The patch block attends bidirectionally (prefix mask), text causally.
* **Visual-prompt injection.** A patch covered by region prompt k gets `vp_proj(E[<Promptk>])` added to its input
  embedding (`vp_proj`: d x d, no bias; E the word-embedding table). No prompt encoder.
* **Learnable upsampler** (`pixelwise.modules.upsample`): the last-layer states at the patch positions [d, h, w] ->
  k x {ConvT 2x2, GELU, dw3x3 + pw1x1, LN} -> per-pixel MLP -> F_up [C, h*2^k, w*2^k] (stride 4 = paper default).
* **Masks.** The hidden state *at* each `[SEG]` position -> `seg_proj` (MLP d -> d -> C) -> e_n; M_n = e_n . F_up
  (no scaling), bilinear to the image size, > 0.
* **Distillation heads** (training only, not in a shipped checkpoint): Linear(d -> C_t) on the patch states against
  a teacher's coarse dense features, and a 1x1 conv on F_up against the teacher's stride-4 features (MSE each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.models.pixelsail.configuration_pixelsail import (
    IM_END,
    VISION_PATCH,
    PixelSailConfig,
    prompt_token,
)
from pixelwise.models.pixelsail.processing_pixelsail import PixelSailInputs
from pixelwise.modules.checkpoint_io import build_model, load_weights, save_model_folder
from pixelwise.modules.transformer import Decoder, KVCache, prefix_lm_mask, text_positions
from pixelwise.modules.upsample import LearnableUpsampler, dot_product_masks


@dataclass
class PixelSailOutput:
    logits: torch.Tensor  # [B, L, V]
    hidden: torch.Tensor  # [B, L, d] last layer after the final norm
    cache: KVCache | None = None


@dataclass
class PixelSailPrediction:
    ids: list[int]  # generated ids (without the prompt)
    seg_states: torch.Tensor  # [N, d] hidden states at the generated [SEG] positions
    mask_logits: torch.Tensor  # [N, H, W] at the original image size
    vision_states: torch.Tensor  # [h*w, d]


class PixelSailModel(nn.Module):
    def __init__(self, config: PixelSailConfig):
        super().__init__()
        self.config = config
        d, P = config.hidden_size, config.patch_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.patch_embed = nn.Linear(3 * P * P, d, bias=False)
        self.vp_proj = nn.Linear(d, d, bias=False)
        self.decoder = Decoder(config.decoder_config())
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.upsampler = LearnableUpsampler(d, config.upsampler_channels, config.seg_channels, config.upsample_blocks)
        self.seg_proj = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, config.seg_channels))
        self.distill_coarse = nn.Linear(d, config.distill_dim) if config.distill_dim else None
        self.distill_fine = nn.Conv2d(config.seg_channels, config.distill_fine_dim, 1) if config.distill_fine_dim else None
        ids = [config.token_ids[prompt_token(k)] for k in range(config.num_prompt_tokens)]
        self.register_buffer("prompt_token_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.seg_id = config.token_ids["[SEG]"]
        self.im_end_id = config.token_ids[IM_END]
        self.patch_id = config.token_ids[VISION_PATCH]

    # ------------------------------------------------------------------ io
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> PixelSailModel:
        config = PixelSailConfig.from_pretrained(path)
        model = build_model(lambda: cls(config), path)
        load_weights(model, path)
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, path: str | Path, processor=None, drop_distillation: bool = True) -> Path:
        """config.json + model.safetensors (+ tokenizer.json); distillation heads are dropped by default, as the
        paper discards them after training."""
        import dataclasses


        cfg, dropped = self.config, ()
        if drop_distillation:
            cfg, dropped = dataclasses.replace(cfg, distill_dim=0, distill_fine_dim=0), ("distill_",)
        return save_model_folder(self, path, cfg, processor, exclude_prefixes=dropped)

    # ------------------------------------------------------------------ embedding
    def embed_one(self, inp: PixelSailInputs) -> torch.Tensor:
        """[L, d]: token embeddings, patch embeddings added on the image block, prompt embeddings on covered
        patches."""
        dev = self.device
        x = self.embed_tokens(inp.input_ids.to(dev))
        s, e = inp.vision_span
        vis = self.patch_embed(inp.patches.to(dev, x.dtype))
        pid = inp.prompt_ids.to(dev)
        covered = pid >= 0
        if bool(covered.any()):
            vp = self.vp_proj(self.embed_tokens(self.prompt_token_ids[pid[covered]]))
            vis = vis.index_put((covered.nonzero()[:, 0],), vp, accumulate=True)
        return torch.cat([x[:s], x[s:e] + vis, x[e:]], dim=0)

    def forward(self, inputs: Sequence[PixelSailInputs]) -> PixelSailOutput:
        """Teacher-forced pass over a padded batch (right padding, each pad token attends only to itself)."""
        dev = self.device
        L = max(i.length for i in inputs)
        embeds = torch.zeros(len(inputs), L, self.config.hidden_size, device=dev, dtype=self.embed_tokens.weight.dtype)
        pos = torch.zeros(3, len(inputs), L, dtype=torch.long, device=dev)
        for b, inp in enumerate(inputs):
            embeds[b, : inp.length] = self.embed_one(inp)
            pos[:, b, : inp.length] = inp.position_ids.to(dev)
        mask = prefix_lm_mask([i.length for i in inputs], L, [i.vision_span for i in inputs], device=dev)
        hidden, _ = self.decoder(embeds, pos, mask)
        return PixelSailOutput(self.lm_head(hidden), hidden)

    # ------------------------------------------------------------------ dense side
    def dense_features(self, vision_states: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[h*w, d] -> F_up [C, h*s, w*s]."""
        gh, gw = grid
        x = vision_states.t().reshape(1, -1, gh, gw)
        return self.upsampler(x)[0]

    def mask_logits(self, seg_states: torch.Tensor, dense: torch.Tensor, size: tuple[int, int] | None = None
                    ) -> torch.Tensor:
        """[N, d] [SEG] states x F_up [C, H', W'] -> [N, H', W'] logits (or resized to `size`)."""
        m = dot_product_masks(self.seg_proj(seg_states), dense)
        if size is not None and m.shape[0] == 0:
            return m.new_zeros(0, *size)
        if size is not None and tuple(m.shape[-2:]) != tuple(size):
            m = F.interpolate(m[None], size=size, mode="bilinear", align_corners=False)[0]
        return m

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, inp: PixelSailInputs, max_new_tokens: int = 64) -> PixelSailPrediction:
        """Greedy decoding with a KV cache after one prefill over the prompt (the image block bidirectional)."""
        dev = self.device
        x = self.embed_one(inp)[None]
        pos = inp.position_ids.to(dev)[:, None]
        mask = prefix_lm_mask([inp.length], inp.length, [inp.vision_span], device=dev)
        hidden, cache = self.decoder(x, pos, mask)
        s, e = inp.vision_span
        vision_states = hidden[0, s:e]
        next_pos = int(inp.position_ids[:, -1].max()) + 1
        logits = self.lm_head(hidden[0, -1])
        out: list[int] = []
        seg_states = []
        for _ in range(max_new_tokens):
            tok = int(logits.argmax())
            out.append(tok)
            if tok == self.im_end_id:
                break
            h, cache = self.decoder(self.embed_tokens(torch.tensor([[tok]], device=dev)),
                                    text_positions(next_pos, 1, device=dev)[:, None], None, cache)
            next_pos += 1
            if tok == self.seg_id:
                seg_states.append(h[0, -1])
            logits = self.lm_head(h[0, -1])
        seg = torch.stack(seg_states) if seg_states else torch.zeros(0, self.config.hidden_size, device=dev)
        dense = self.dense_features(vision_states, inp.grid)
        return PixelSailPrediction(out, seg, self.mask_logits(seg, dense, inp.frame_size), vision_states)

    @torch.no_grad()
    def masks_for_answer(self, inp: PixelSailInputs) -> torch.Tensor:
        """Teacher-forced: `inp` already holds an answer; the [SEG] states of that answer -> [N, H, W] logits. Used
        to carry one generated answer over to the other frames of a clip (Pixel-SAIL itself is image-only)."""
        out = self.forward([inp])
        ids = inp.input_ids.to(self.device)
        seg_pos = ((ids == self.seg_id) & inp.labels_mask.to(self.device)).nonzero()[:, 0]
        s, e = inp.vision_span
        dense = self.dense_features(out.hidden[0, s:e], inp.grid)
        return self.mask_logits(out.hidden[0, seg_pos], dense, inp.frame_size)
