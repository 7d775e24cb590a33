"""SAM 2.1 video segmenter driven by hidden prompt tokens (the UniPixel way of prompting SAM2).

`Sam2Model.track` reproduces what UniPixel's inference does per `<|seg|>` with the official `SAM2VideoPredictor`
(`init_state` -> `add_new_hidden_state(frame 0)` -> `propagate_in_video` forward), but for O objects at once:

* conditioning frame: image embedding + `no_mem_embed` (no memory attention); sparse prompt = 2 not-a-point tokens
  + the object's hidden tokens; dense prompt = `no_mask_embed`;
* every later frame: memory attention over the conditioning frame's memory, up to `num_maskmem - 1` most recent
  frames' memories (each with its temporal embedding) and the object pointers of the conditioning frame and of up to
  `max_obj_ptrs_in_encoder - 1` past frames (signed temporal sine encoding); sparse prompt = 2 not-a-point tokens;
* every frame: multimask decoding, the candidate with the highest predicted IoU is kept; in inference mode an object
  score <= 0 replaces all low-res logits by -1024 and the object pointer by `no_obj_ptr`; the memory of the frame is
  encoded from the kept mask upsampled to S x S (`sigmoid * 20 - 10`) plus `no_obj_embed_spatial` when absent.

Nothing here is wrapped in `no_grad`: the same code path trains (gradients flow through the memory), and in training
mode (`model.train()`) the no-object masking of the logits is off, as in UniPixel's `SAM2Train`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pixelwise.core.errors import CheckpointError
from pixelwise.modules.sam2.common import MLP, NO_OBJ_SCORE, resize_logits, sine_encoding_1d, sine_position_encoding_2d
from pixelwise.modules.sam2.config import Sam2Config
from pixelwise.modules.sam2.features import FrameSource, Sam2Features, Sam2FrameFeatures
from pixelwise.modules.sam2.image_encoder import ImageEncoder
from pixelwise.modules.sam2.mask_decoder import MaskDecoder
from pixelwise.modules.sam2.memory_attention import MemoryAttention
from pixelwise.modules.sam2.memory_encoder import MemoryEncoder
from pixelwise.modules.sam2.prompt_encoder import PromptEncoder
from pixelwise.modules.sam2.refine import MaskRefiner


@dataclass
class Sam2TrackOutput:
    """Per-object, per-frame results of `Sam2Model.track` (O objects, T frames, S input size, h4 = S/4)."""

    mask_logits: torch.Tensor | None  # [O, T, H, W] at the original size, before thresholding (None: keep_logits=False)
    masks: torch.Tensor  # [O, T, H, W] bool, mask_logits > 0
    lowres_mask_logits: torch.Tensor  # [O, T, h4, w4] kept candidate, after no-object masking (inference mode)
    object_score_logits: torch.Tensor  # [O, T]
    obj_ptr: torch.Tensor  # [O, T, C]
    decoder_iou_pred: torch.Tensor  # [O, T, 3]
    decoder_multimask_logits: torch.Tensor  # [O, T, 3, h4, w4] raw decoder candidates (before selection/masking)
    sparse_prompt: torch.Tensor  # [O, 4, C] sparse tokens of the conditioning frame (2 not-a-point + hidden)
    tracked: torch.Tensor  # [T] bool, frames that were processed (frames before the conditioning frame are not)


@dataclass
class Sam2FrameOutput:
    """Results of one processed frame (what `track_frames` yields); shapes as `Sam2TrackOutput` without T."""

    frame_idx: int
    mask_logits: torch.Tensor | None  # [O, H, W] (None when no frame_size was given)
    lowres_mask_logits: torch.Tensor  # [O, h4, w4]
    object_score_logits: torch.Tensor  # [O]
    obj_ptr: torch.Tensor  # [O, C]
    decoder_iou_pred: torch.Tensor  # [O, 3]
    decoder_multimask_logits: torch.Tensor  # [O, 3, h4, w4]
    sparse_prompt: torch.Tensor | None  # [O, N, C] on the conditioning frame, else None
    decoder_iou_logits: torch.Tensor | None = None  # [O, 3] decoder_iou_pred before its sigmoid


@dataclass
class _FrameMemory:
    """What a processed frame leaves behind for later frames."""

    features: torch.Tensor  # [O, mem_dim, h, w]
    obj_ptr: torch.Tensor  # [O, C]


@dataclass
class _HeadsOutput:
    multimask_logits: torch.Tensor  # [O, 3, h4, w4] raw
    iou_pred: torch.Tensor  # [O, 3]
    iou_logits: torch.Tensor  # [O, 3]
    lowres_logits: torch.Tensor  # [O, 1, h4, w4] kept candidate (masked if inference)
    obj_ptr: torch.Tensor  # [O, C]
    object_score_logits: torch.Tensor  # [O, 1]
    sparse_prompt: torch.Tensor  # [O, N, C]


class Sam2Model(nn.Module):
    """SAM 2.1 (official module/parameter layout) with hidden-token prompting and batched multi-object tracking."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c, m, s = cfg.hidden_dim, cfg.mem_dim, cfg.image_embedding_size
        self.hidden_dim, self.mem_dim, self.image_size = c, m, cfg.image_size
        self.num_maskmem = cfg.num_maskmem
        self.image_encoder = ImageEncoder(cfg)
        self.sam_prompt_encoder = PromptEncoder(c, (s, s), (cfg.image_size, cfg.image_size), cfg.mask_in_chans)
        self.sam_mask_decoder = MaskDecoder(c, cfg.decoder_num_heads, cfg.decoder_mlp_dim, cfg.decoder_depth,
                                            cfg.decoder_attention_downsample_rate, cfg.num_multimask_outputs,
                                            cfg.iou_head_depth, cfg.iou_head_hidden_dim)
        self.memory_attention = MemoryAttention(cfg)
        self.memory_encoder = MemoryEncoder(cfg)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))  # official parameter; unused with directly_add_no_mem_embed
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        # Official parameter of SAM2's "mask given as input -> use it as output" path (mask prompts on a frame).
        # UniPixel never prompts SAM2 with masks, so track() does not use it; it is kept for checkpoint parity.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj = nn.Linear(c, m)
        if cfg.mask_refiner:  # pixelwise's tiny models only: the mask logits upsampled by reading the frame
            self.mask_refiner = MaskRefiner(cfg.mask_refiner)
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr,
                  self.no_obj_embed_spatial):
            nn.init.trunc_normal_(p, std=0.02)
        self.encoded_frame_count = 0
        """Number of frames run through the image encoder since construction (tests reset it to 0 freely)."""

    # ---------------------------------------------------------------------------------------------------- loading
    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load official facebookresearch/UniPixel SAM2 weights (keys without the `sam2.` prefix).

        Meta's `.pt` layer-scale name `fuser.layers.N.gamma` is accepted and renamed to `.weight`. Any missing,
        unexpected or mis-shaped key raises `CheckpointError` naming the keys.
        """
        sd = {(k[: -len(".gamma")] + ".weight" if k.endswith(".gamma") else k): v for k, v in state_dict.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        mis_shaped = sorted(f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
                            for k in set(own) & set(sd) if tuple(sd[k].shape) != tuple(own[k].shape))
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in total)" if len(keys) > 12 else "")
                problems.append(f"{what} keys: {shown}")
        if problems:
            raise CheckpointError("SAM2 weights do not match the configured architecture: " + "; ".join(problems))
        self.load_state_dict(sd, strict=True)

    # --------------------------------------------------------------------------------------------------- encoding
    def encode_frames(self, frames: torch.Tensor, chunk_size: int = 16) -> Sam2Features:
        """Run frames `[T, 3, S, S]` (SAM2-normalised) through the image encoder once, in chunks of `chunk_size`."""
        if frames.ndim != 4 or frames.shape[1] != 3 or tuple(frames.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(f"expected frames [T, 3, {self.image_size}, {self.image_size}], got {tuple(frames.shape)}")
        embed, s0, s1 = [], [], []
        pos = None
        for start in range(0, frames.shape[0], chunk_size):
            out = self.image_encoder(frames[start: start + chunk_size])
            self.encoded_frame_count += out.backbone_fpn[0].shape[0]
            s0.append(self.sam_mask_decoder.conv_s0(out.backbone_fpn[0]))
            s1.append(self.sam_mask_decoder.conv_s1(out.backbone_fpn[1]))
            embed.append(out.backbone_fpn[-1])
            pos = out.vision_pos_enc[-1]
        assert pos is not None
        return Sam2Features(embed=torch.cat(embed), high_res_s0=torch.cat(s0), high_res_s1=torch.cat(s1), pos=pos,
                            pixels=frames)

    def encode_frame(self, frame: torch.Tensor) -> Sam2FrameFeatures:
        """Encode a single frame `[3, S, S]`; convenient as the lazy source of a streaming `track`."""
        return self.encode_frames(frame.unsqueeze(0))[0]

    # --------------------------------------------------------------------------------------------------- tracking
    def track(self, feats: FrameSource, hidden_prompts: torch.Tensor, frame_size: tuple[int, int] | Sequence[int],
              cond_frame: int = 0, num_frames: int | None = None, no_obj_masking: bool | None = None,
              keep_logits: bool = True) -> Sam2TrackOutput:
        """Segment O objects over a clip, prompted by hidden tokens on `cond_frame`, propagating forward.

        Collects `track_frames` into `[O, T, ...]` tensors. With `keep_logits=False` the full-resolution
        `mask_logits` are not kept (None), only the boolean `masks` (4x less memory on long clips).
        Arguments as in `track_frames`.
        """
        frames = list(self.track_frames(feats, hidden_prompts, frame_size, cond_frame, num_frames, no_obj_masking))
        return _stack_frames(frames, self._num_frames(feats, num_frames), keep_logits)

    def track_frames(self, feats: FrameSource, hidden_prompts: torch.Tensor,
                     frame_size: tuple[int, int] | Sequence[int] | None, cond_frame: int = 0,
                     num_frames: int | None = None, no_obj_masking: bool | None = None,
                     reverse: bool = False) -> Iterator[Sam2FrameOutput]:
        """Per-frame generator behind `track`: yields frame `cond_frame`, then each later frame, as computed
        (`reverse`: each earlier frame, back to frame 0, as SAM2's reverse propagation; memory distances count in
        the order the frames are visited).

        Args:
            feats: `encode_frames` output, a sequence of per-frame features, or a callable `t -> Sam2FrameFeatures`
                (then `num_frames` is required); frame t is requested once, in increasing order, so a lazy source
                may encode on demand and drop old frames. The memory bank only keeps what later frames can read.
            hidden_prompts: `[O, n_hidden, C]` LLM prompt tokens, one row per object (objects are tracked as a batch).
            frame_size: original `(H, W)` for `mask_logits` (None: low-res outputs only).
            cond_frame: the prompted frame; earlier frames are not processed (later ones with `reverse`).
            num_frames: clip length (defaults to `len(feats)`).
            no_obj_masking: replace logits of absent objects by -1024 (default: `not self.training`, as upstream).
        """
        if hidden_prompts.ndim != 3 or hidden_prompts.shape[-1] != self.hidden_dim:
            raise ValueError(f"hidden_prompts must be [O, n, {self.hidden_dim}], got {tuple(hidden_prompts.shape)}")
        num_frames = self._num_frames(feats, num_frames)
        if not 0 <= cond_frame < num_frames:
            raise ValueError(f"cond_frame {cond_frame} outside a clip of {num_frames} frames")
        get_frame: Callable[[int], Sam2FrameFeatures] = feats if callable(feats) else feats.__getitem__
        mask_nonobj = (not self.training) if no_obj_masking is None else no_obj_masking
        n_obj = hidden_prompts.shape[0]
        size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        memories: dict[int, _FrameMemory] = {}
        keep = max(self.num_maskmem - 1, self.cfg.max_obj_ptrs_in_encoder - 1)

        def share(x: torch.Tensor) -> torch.Tensor:
            return x.expand(n_obj, *x.shape[1:])  # one frame's features viewed by every object, no copy

        real = (lambda v: num_frames - 1 - v) if reverse else (lambda v: v)  # visiting order -> frame index
        start = real(cond_frame)
        for t in range(start, num_frames):
            frame = get_frame(real(t))
            embed, s0, s1 = share(frame.embed), share(frame.high_res_s0), share(frame.high_res_s1)
            if t == start:
                pix = embed + self.no_mem_embed.view(1, -1, 1, 1)
                heads = self._forward_heads(pix, (s0, s1), hidden_prompts, mask_nonobj)
            else:
                pix = self._condition_on_memory(t, start, embed, frame.pos, memories, num_frames)
                heads = self._forward_heads(pix, (s0, s1), None, mask_nonobj)
            memories[t] = self._encode_memory(embed, heads)
            stale = t - keep - 1  # no later frame reads this memory again: keep the bank bounded
            if stale != start:
                memories.pop(stale, None)
            yield Sam2FrameOutput(
                frame_idx=real(t),
                mask_logits=None if size is None else self.output_logits(heads.lowres_logits, frame, size)[:, 0],
                lowres_mask_logits=heads.lowres_logits[:, 0],
                object_score_logits=heads.object_score_logits[:, 0],
                obj_ptr=heads.obj_ptr,
                decoder_iou_pred=heads.iou_pred,
                decoder_multimask_logits=heads.multimask_logits,
                sparse_prompt=heads.sparse_prompt if t == start else None,
                decoder_iou_logits=heads.iou_logits,
            )

    @staticmethod
    def _num_frames(feats: FrameSource, num_frames: int | None) -> int:
        if num_frames is not None:
            return int(num_frames)
        if callable(feats):
            raise TypeError("num_frames is required when feats is a callable")
        return len(feats)

    # ---------------------------------------------------------------------------------------------------- helpers
    def _forward_heads(self, pix: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor],
                       hidden: torch.Tensor | None, mask_nonobj: bool) -> _HeadsOutput:
        """Prompt encoder + mask decoder + candidate selection + object pointer for one frame of O objects."""
        n = pix.shape[0]
        coords = pix.new_zeros(n, 1, 2)  # no clicks: one not-a-point (+ the encoder's padding not-a-point)
        labels = -torch.ones(n, 1, dtype=torch.int32, device=pix.device)
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), hidden=hidden)
        image_pe = self.sam_prompt_encoder.get_dense_pe().to(pix.dtype)
        dec = self.sam_mask_decoder(pix, image_pe, sparse, dense, high_res,
                                    multimask_output=True)
        present = dec.object_score_logits > 0  # [O, 1]
        masks = dec.masks
        if mask_nonobj:
            masks = torch.where(present[:, :, None, None], masks, torch.full_like(masks, NO_OBJ_SCORE))
        best = torch.argmax(dec.iou_pred, dim=-1)
        rows = torch.arange(n, device=pix.device)
        lowres = masks[rows, best].unsqueeze(1)
        token = dec.sam_tokens[rows, best]
        obj_ptr = self.obj_ptr_proj(token)
        lam = present.to(obj_ptr.dtype)
        obj_ptr = lam * obj_ptr + (1 - lam) * self.no_obj_ptr
        return _HeadsOutput(dec.masks, dec.iou_pred, dec.iou_logits, lowres, obj_ptr, dec.object_score_logits, sparse)

    def output_logits(self, lowres: torch.Tensor, frame: Sam2FrameFeatures, size: tuple[int, int]) -> torch.Tensor:
        """Kept low-res logits [O, 1, h4, w4] of a frame -> logits [O, 1, H, W] at the requested size: upsampled
        bilinearly (SAM2's own resize), plus, where the model has a `mask_refiner`, its correction made at the input
        size from the frame's pixels (resized the same way)."""
        up = resize_logits(lowres, size)
        if not hasattr(self, "mask_refiner"):
            return up
        if frame.pixels is None:
            raise ValueError("this SAM2 refines its masks with the frame's pixels: encode frames with encode_frames "
                             "(their features keep the input)")
        return up + resize_logits(self.mask_refiner(lowres, frame.pixels), size)

    def propose(self, frame: Sam2FrameFeatures, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame segmented for N prompts at once (`[N, n, C]` prompt tokens, e.g. clicks), no memory: the kept
        candidate's low-res mask logits `[N, S/4, S/4]` and the object score logits `[N]`."""
        n = prompts.shape[0]
        share = lambda x: x.expand(n, *x.shape[1:])  # noqa: E731
        pix = share(frame.embed) + self.no_mem_embed.view(1, -1, 1, 1)
        heads = self._forward_heads(pix, (share(frame.high_res_s0), share(frame.high_res_s1)), prompts, False)
        return heads.lowres_logits[:, 0], heads.object_score_logits[:, 0]

    def _encode_memory(self, embed: torch.Tensor, heads: _HeadsOutput) -> _FrameMemory:
        """Memory of a frame from its raw image embedding and the kept mask (upsampled to S x S)."""
        high_res = resize_logits(heads.lowres_logits, (self.image_size, self.image_size))
        mask_for_mem = torch.sigmoid(high_res) * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        features, _ = self.memory_encoder(embed, mask_for_mem)
        absent = 1.0 - (heads.object_score_logits > 0).to(features.dtype)
        features = features + absent[:, :, None, None] * self.no_obj_embed_spatial[:, :, None, None]
        return _FrameMemory(features=features, obj_ptr=heads.obj_ptr)

    def _condition_on_memory(self, t: int, cond_frame: int, embed: torch.Tensor, pos: torch.Tensor,
                             memories: dict[int, _FrameMemory], num_frames: int) -> torch.Tensor:
        """Memory attention of frame t over the conditioning memory, recent memories and object pointers."""
        n, c, h, w = embed.shape
        mem_pos_spatial = None
        tokens, token_pos = [], []
        # (frame index, temporal-embedding slot): the conditioning frame uses the last slot, frame t-k slot k-1.
        slots = [(cond_frame, self.num_maskmem - 1)]
        for t_rel in range(self.num_maskmem - 1, 0, -1):  # oldest first, as upstream concatenates them
            prev = t - t_rel
            if prev != cond_frame and prev in memories:
                slots.append((prev, t_rel - 1))
        for idx, slot in slots:
            feat = memories[idx].features
            if mem_pos_spatial is None:
                mem_pos_spatial = self._memory_pos(feat)
            tokens.append(feat.flatten(2).transpose(1, 2))
            token_pos.append((mem_pos_spatial + self.maskmem_tpos_enc[slot].view(1, 1, -1)).expand(n, -1, -1))

        # Object pointers: the conditioning frame (signed distance) then up to max-1 past frames (distance t_diff).
        max_ptrs = min(num_frames, self.cfg.max_obj_ptrs_in_encoder)
        ptr_items = [(t - cond_frame, memories[cond_frame].obj_ptr)]
        for t_diff in range(1, max_ptrs):
            prev = t - t_diff
            if prev < 0:
                break
            if prev != cond_frame and prev in memories:
                ptr_items.append((t_diff, memories[prev].obj_ptr))
        distances = torch.tensor([d for d, _ in ptr_items], dtype=torch.float32, device=embed.device)
        ptr_pos = self.obj_ptr_tpos_proj(sine_encoding_1d(distances / (max_ptrs - 1), c).to(embed.dtype))  # [P, mem]
        ptrs = torch.stack([p for _, p in ptr_items], dim=1)  # [O, P, C]
        split = c // self.mem_dim  # each pointer becomes `split` tokens of width mem_dim
        ptrs = ptrs.reshape(n, len(ptr_items) * split, self.mem_dim)
        ptr_pos = ptr_pos.repeat_interleave(split, dim=0).unsqueeze(0).expand(n, -1, -1)
        tokens.append(ptrs)
        token_pos.append(ptr_pos)

        memory = torch.cat(tokens, dim=1)
        memory_pos = torch.cat(token_pos, dim=1)
        curr = embed.flatten(2).transpose(1, 2)
        curr_pos = pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(curr, curr_pos, memory, memory_pos, (h, w), num_obj_ptr_tokens=ptrs.shape[1])
        return out.transpose(1, 2).reshape(n, c, h, w)

    def _memory_pos(self, features: torch.Tensor) -> torch.Tensor:
        """Sine PE `[1, h*w, mem_dim]` of memory features (depends only on the grid size, so computed once)."""
        pe = sine_position_encoding_2d(self.mem_dim, features.shape[-2], features.shape[-1], device=features.device,
                                       dtype=features.dtype)
        return pe.flatten(2).transpose(1, 2)


def _stack_frames(frames: list[Sam2FrameOutput], num_frames: int, keep_logits: bool) -> Sam2TrackOutput:
    """Stack per-frame outputs along a new T axis; frames never processed get -1024 logits and zeros."""
    first = frames[0]
    by_t: list[Sam2FrameOutput | None] = [None] * num_frames
    for f in frames:
        by_t[f.frame_idx] = f

    def stack(get: Callable[[Sam2FrameOutput], torch.Tensor], fill: float) -> torch.Tensor:
        like = get(first)
        return torch.stack([get(f) if f is not None else torch.full_like(like, fill) for f in by_t], dim=1)

    if first.mask_logits is None or first.sparse_prompt is None:
        raise ValueError("stacking needs full-resolution logits and the conditioning frame's output")

    def video_logits(f: Sam2FrameOutput) -> torch.Tensor:
        assert f.mask_logits is not None
        return f.mask_logits

    logits = stack(video_logits, NO_OBJ_SCORE) if keep_logits else None
    masks = logits > 0 if logits is not None else stack(lambda f: video_logits(f) > 0, 0.0)
    return Sam2TrackOutput(
        mask_logits=logits,
        masks=masks,
        lowres_mask_logits=stack(lambda f: f.lowres_mask_logits, NO_OBJ_SCORE),
        object_score_logits=stack(lambda f: f.object_score_logits, NO_OBJ_SCORE),
        obj_ptr=stack(lambda f: f.obj_ptr, 0.0),
        decoder_iou_pred=stack(lambda f: f.decoder_iou_pred, 0.0),
        decoder_multimask_logits=stack(lambda f: f.decoder_multimask_logits, NO_OBJ_SCORE),
        sparse_prompt=first.sparse_prompt,
        tracked=torch.tensor([f is not None for f in by_t]),
    )
