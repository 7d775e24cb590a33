"""VITRON: an LLM front end that routes requests to back-end specialists with hybrid messages.

Shapes for T frames of an h x w patch grid, encoder width d_v, LLM width d, signal width s, seg width C:
* **Front-end vision encoder**: P x P patches -> Linear -> d_v -> bidirectional blocks (`pixelwise.modules.transformer`,
  2-D rotary positions) -> per-frame features F [T, h*w, d_v]. For the LLM, frames are *averaged over time* (the
  paper's temporal average pooling; the released code instead gives the LLM per-frame tokens), k x k average-pooled
  and projected by an `mlp2x_gelu` projector -> (h/k * w/k) tokens of width d.
* **Region (sketch) encoder**: a visual prompt's mask, area-resampled to the patch grid, pools F on its frame
  (mask-average) -> MLP; its box (normalised x1, y1, x2, y2) -> location MLP; the sum replaces the `<region>` token
  embedding. (The released code rasterises boxes with x and y swapped; here masks index rows by y.)
* **LLM router** (causal decoder): writes `<module>..</module><instruction>..</instruction>[SIG]`.
* **Hybrid message**: the hidden state at `[SIG]` -> v = [v_p ; v_s] (`signal_p`, `signal_s`: d -> s each;
  task-specific and task-invariant parts).
* **Segmentation back-end** (trained with the router): F per frame -> learnable upsampler
  (`pixelwise.modules.upsample`) -> [T, C, H/4, W/4], plus the back-end's own light pixel encoder (a stride-4 conv
  stem on the raw frame, like the paper's specialist having its own image encoder); query = MLP(v) [C];
  masks = query . features, per frame.
* **Cross-task synergy** (training only, optional): a discriminator predicts the op from v_s through a gradient
  reversal layer, so minimising its loss w.r.t. the discriminator while maximising it w.r.t. the router makes v_s
  task-invariant (the paper's min-max L_syn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.core.errors import PromptError
from pixelwise.models.vitron.configuration_vitron import IM_END, REGION_TOKEN, SIGNAL_TOKEN, TASKS, VitronConfig
from pixelwise.models.vitron.processing_vitron import VitronInputs
from pixelwise.modules.checkpoint_io import build_model, load_weights, save_model_folder
from pixelwise.modules.transformer import Decoder, grid_positions, prefix_lm_mask, text_positions
from pixelwise.modules.upsample import LearnableUpsampler, dot_product_masks


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """[T, h*w, 3*P*P] ((C, y, x) order per patch, as `modules.patches.patchify_frames`) -> [T, 3, h*P, w*P]."""
    T = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(T, gh, gw, 3, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(T, 3, gh * patch_size, gw * patch_size)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return _GradReverse.apply(x, scale)


@dataclass
class VitronOutput:
    logits: torch.Tensor  # [B, L, V]
    hidden: torch.Tensor  # [B, L, d]
    frame_features: list[torch.Tensor]  # per sample [T, h*w, d_v]


@dataclass
class VitronGeneration:
    ids: list[int]
    signal: torch.Tensor | None  # [2*s] v = [v_p ; v_s], None when no [SIG] was written
    frame_features: torch.Tensor  # [T, h*w, d_v]


class SignalNorm(nn.Module):
    """Batch normalisation without affine parameters (`config.signal_norm`): a training batch of v [N, 2s] is
    centred and scaled over its N rows (one row: the running statistics), inference uses the running statistics."""

    def __init__(self, n: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        batch = self.training and v.shape[0] > 1
        return F.batch_norm(v, self.running_mean, self.running_var, training=batch, momentum=self.momentum,
                            eps=self.eps)


class VitronModel(nn.Module):
    def __init__(self, config: VitronConfig):
        super().__init__()
        self.config = config
        P, dv, d, s = config.patch_size, config.vision_hidden, config.hidden_size, config.signal_dim
        self.patch_embed = nn.Linear(3 * P * P, dv, bias=False)
        self.vision = Decoder(config.vision_config())
        self.projector = nn.Sequential(nn.Linear(dv, d), nn.GELU(), nn.Linear(d, d))
        self.region_feat = nn.Sequential(nn.Linear(dv, d), nn.GELU(), nn.Linear(d, d))
        self.region_loc = nn.Sequential(nn.Linear(4, d // 2), nn.GELU(), nn.Linear(d // 2, d))
        self.region_norm = nn.RMSNorm(d, eps=1e-6) if config.region_norm else nn.Identity()
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.llm = Decoder(config.llm_config())
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.signal_p = nn.Linear(d, s)
        self.signal_s = nn.Linear(d, s)
        self.upsampler = LearnableUpsampler(dv, config.upsampler_channels, config.seg_channels, config.upsample_blocks)
        c = config.pixel_stem_channels
        self.pixel_stem = (nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.GELU(), nn.Conv2d(c, c, 3, 2, 1), nn.GELU(),
                                         nn.Conv2d(c, config.seg_channels, 1)) if c else None)
        self.signal_norm = SignalNorm(2 * s) if config.signal_norm else nn.Identity()
        self.seg_query = nn.Sequential(nn.Linear(2 * s, config.seg_channels), nn.GELU(),
                                       nn.Linear(config.seg_channels, config.seg_channels))
        self.backend_words = nn.Embedding(config.vocab_size, config.seg_channels) if config.backend_words else None
        self.synergy = (nn.Sequential(nn.Linear(s, config.synergy_hidden), nn.GELU(),
                                      nn.Linear(config.synergy_hidden, len(TASKS))) if config.synergy_hidden else None)
        self.sig_id = config.token_ids[SIGNAL_TOKEN]
        self.region_id = config.token_ids[REGION_TOKEN]
        self.im_end_id = config.token_ids[IM_END]

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    # ------------------------------------------------------------------ io
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> VitronModel:
        config = VitronConfig.from_pretrained(path)
        model = build_model(lambda: cls(config), path)
        load_weights(model, path)
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, path: str | Path, processor=None, drop_training_heads: bool = True) -> Path:
        import dataclasses


        cfg, dropped = self.config, ()
        if drop_training_heads:
            cfg, dropped = dataclasses.replace(cfg, synergy_hidden=0), ("synergy.",)
        return save_model_folder(self, path, cfg, processor, exclude_prefixes=dropped)

    # ------------------------------------------------------------------ front end
    def encode_frames(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[T, h*w, 3*P*P] -> [T, h*w, d_v] (each frame on its own, full attention within the frame)."""
        T = patches.shape[0]
        x = self.patch_embed(patches.to(self.device, self.embed_tokens.weight.dtype))
        pos = grid_positions(0, *grid, device=self.device)[:, None].expand(3, T, -1)
        out, _ = self.vision(x, pos, None)
        return out

    def llm_vision_tokens(self, feats: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[T, h*w, d_v] -> temporal mean -> k x k mean pool -> projector -> [(h/k)*(w/k), d]."""
        k = self.config.llm_pool
        x = feats.mean(0).t().reshape(1, -1, *grid)
        x = F.avg_pool2d(x, k) if k > 1 else x
        return self.projector(x.flatten(2)[0].t())

    def region_embeddings(self, inp: VitronInputs, feats: torch.Tensor) -> torch.Tensor:
        """[K, d] sketch embeddings of the region prompts."""
        loc = self.region_loc(inp.region_boxes.to(feats.device, feats.dtype))
        return self.region_norm(self.region_feat(self.region_pooled(inp, feats)) + loc)

    def region_pooled(self, inp: VitronInputs, feats: torch.Tensor) -> torch.Tensor:
        """[K, d_v] front-end features [T, h*w, d_v] averaged under each region's mask on its frame (an empty mask:
        the whole frame)."""
        gh, gw = inp.grid
        rows = []
        for m, t in zip(inp.region_masks, inp.region_frames):
            w = torch.from_numpy(m).float()[None, None]
            w = F.interpolate(w, size=(gh, gw), mode="area")[0, 0].flatten().to(feats.device, feats.dtype)
            if float(w.sum()) <= 0:
                w = torch.ones_like(w)
            rows.append((w[:, None] * feats[min(t, feats.shape[0] - 1)]).sum(0) / w.sum())
        return torch.stack(rows)

    def embed_one(self, inp: VitronInputs) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode_frames(inp.patches, inp.grid)
        ids = inp.input_ids.to(self.device)
        x = self.embed_tokens(ids)
        s, e = inp.vision_span
        x = torch.cat([x[:s], self.llm_vision_tokens(feats, inp.grid), x[e:]], 0)
        if inp.region_masks:
            where = (ids == self.region_id).nonzero()[:, 0]
            x = x.index_put((where,), self.region_embeddings(inp, feats)[: len(where)])
        return x, feats

    def forward(self, inputs: Sequence[VitronInputs]) -> VitronOutput:
        dev = self.device
        L = max(i.length for i in inputs)
        embeds = torch.zeros(len(inputs), L, self.config.hidden_size, device=dev, dtype=self.embed_tokens.weight.dtype)
        pos = torch.zeros(3, len(inputs), L, dtype=torch.long, device=dev)
        feats = []
        for b, inp in enumerate(inputs):
            x, f = self.embed_one(inp)
            embeds[b, : inp.length] = x
            pos[:, b, : inp.length] = inp.position_ids.to(dev)
            feats.append(f)
        mask = prefix_lm_mask([i.length for i in inputs], L, [None] * len(inputs), device=dev)
        hidden, _ = self.llm(embeds, pos, mask)
        return VitronOutput(self.lm_head(hidden), hidden, feats)

    # ------------------------------------------------------------------ hybrid message + segmentation back-end
    def signal(self, states: torch.Tensor) -> torch.Tensor:
        """[..., d] hidden states at [SIG] -> v = [v_p ; v_s] [..., 2s]."""
        return torch.cat([self.signal_p(states), self.signal_s(states)], dim=-1)

    def signal_at(self, hidden: torch.Tensor, answer: torch.Tensor, sig: int) -> torch.Tensor:
        """A sequence's states [L, d], its answer positions (bool [L]) and the [SIG] position -> v [1, 2s]: from the
        [SIG] state, or with `config.signal_pool` the mean state of the answer's tokens up to and including [SIG]
        (what `generate` does token by token)."""
        if not self.config.signal_pool:
            return self.signal(hidden[sig: sig + 1])
        span = answer.clone()
        span[sig + 1:] = False
        span[sig] = True
        return self.signal(hidden[span.to(hidden.device)].mean(0, keepdim=True))

    def synergy_logits(self, v: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if self.synergy is None:
            raise RuntimeError("this model has no synergy discriminator (synergy_hidden = 0)")
        return self.synergy(grad_reverse(v[..., self.config.signal_dim:], scale))

    def seg_queries(self, v: torch.Tensor, words: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """v [N, 2s] (+ with `config.backend_words` each instruction's target token ids) -> the segmentation
        queries [N, C]. With `config.signal_norm` a training batch is normalised over its N rows: pass every sample's
        v at once (`segment(..., queries=...)`)."""
        q = self.seg_query(self.signal_norm(v))
        if self.backend_words is None:
            return q
        if words is None or len(words) != q.shape[0]:
            raise PromptError("this segmentation back-end reads the instruction's target words: pass one id list per v")
        read = [self.backend_words(w.to(self.device)).mean(0) if len(w) else q.new_zeros(q.shape[-1]) for w in words]
        return q + torch.stack(read).to(q.dtype)

    def segment(self, v: torch.Tensor, feats: torch.Tensor, grid: tuple[int, int],
                size: tuple[int, int] | None = None, patches: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, words: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """v [N, 2s], per-frame features [T, h*w, d_v] (+ the frames' raw patches [T, h*w, 3*P*P] for the pixel
        stem) -> mask logits [N, T, H', W'] (or resized to `size`); `queries` = `seg_queries(v, words)` when
        computed already (then `v` and `words` are not read)."""
        T = feats.shape[0]
        dense = self.upsampler(feats.transpose(1, 2).reshape(T, -1, *grid))  # [T, C, H', W']
        if self.pixel_stem is not None:
            if patches is None:
                raise ValueError("this segmentation back-end reads the raw frames: pass patches")
            pix = self.pixel_stem(unpatchify(patches.to(dense.device, dense.dtype), grid, self.config.patch_size))
            if pix.shape[-2:] != dense.shape[-2:]:
                pix = F.interpolate(pix, size=dense.shape[-2:], mode="bilinear", align_corners=False)
            dense = dense + pix
        m = dot_product_masks(self.seg_queries(v, words) if queries is None else queries, dense)
        if size is not None and tuple(m.shape[-2:]) != tuple(size):
            n = m.shape[0]
            m = F.interpolate(m.reshape(n * T, 1, *m.shape[-2:]), size=size, mode="bilinear",
                              align_corners=False).reshape(n, T, *size)
        return m

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, inp: VitronInputs, max_new_tokens: int = 64,
                 allowed: Callable[[list[int]], list[int] | None] | None = None) -> VitronGeneration:
        dev = self.device
        x, feats = self.embed_one(inp)
        mask = prefix_lm_mask([inp.length], inp.length, [None], device=dev)
        hidden, cache = self.llm(x[None], inp.position_ids.to(dev)[:, None], mask)
        next_pos = int(inp.position_ids[:, -1].max()) + 1
        logits = self.lm_head(hidden[0, -1])
        out: list[int] = []
        signal = None
        states = []  # the answer's states so far (`config.signal_pool`)
        for _ in range(max_new_tokens):
            ok = allowed(out) if allowed is not None else None
            if ok is not None:
                restricted = torch.full_like(logits, float("-inf"))
                restricted[ok] = logits[ok]
                logits = restricted
            tok = int(logits.argmax())
            out.append(tok)
            if tok == self.im_end_id:
                break
            h, cache = self.llm(self.embed_tokens(torch.tensor([[tok]], device=dev)),
                                text_positions(next_pos, 1, device=dev)[:, None], None, cache)
            next_pos += 1
            states.append(h[0, -1])
            if tok == self.sig_id and signal is None:
                signal = self.signal(torch.stack(states).mean(0) if self.config.signal_pool else h[0, -1])
            logits = self.lm_head(h[0, -1])
        return VitronGeneration(out, signal, feats)
