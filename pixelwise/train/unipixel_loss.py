"""The UniPixel training loss of one example: LM cross-entropy on assistant tokens + SAM2 mask losses of every
supervised `<|seg|>` (its pre-norm state -> `seg_head` -> SAM2 prompt tokens on frame 0 -> tracked over the example's
frames with gradients through the memory), as the official model trains (unipixel.md §6.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pixelwise.modules.losses import Sam2LossWeights, lm_loss, sam2_frame_loss


@dataclass
class LossConfig:
    lm_weight: float = 1.0
    seg_weight: float = 1.0
    sam2: Sam2LossWeights = field(default_factory=Sam2LossWeights)
    seg_enabled: bool = True  # stage 1 runs without the SAM2 decoder

    @classmethod
    def from_dict(cls, d: dict | None) -> LossConfig:
        d = dict(d or {})
        sam2 = Sam2LossWeights(**d.pop("sam2", {}))
        return cls(sam2=sam2, **d)


def example_loss(model, ex, cfg: LossConfig, keep_masks: bool = False) -> tuple[torch.Tensor, dict[str, float], dict]:
    """-> (total loss tensor, float metrics, extras {"pred_masks": bool [O, T, S, S]} when keep_masks)."""
    out = model(ex.inputs)
    ids = ex.inputs.input_ids.to(out.logits.device).reshape(-1)
    l_lm = lm_loss(out.logits, ids, ex.labels_mask.to(out.logits.device))
    total = cfg.lm_weight * l_lm
    metrics = {"loss_lm": float(l_lm.detach())}
    extras: dict = {}
    if cfg.seg_enabled and ex.seg_targets is not None and ex.seg_index:
        core = unwrap_core(model)
        positions = [out.seg_positions[k] for k in ex.seg_index]
        states = out.prenorm_hidden[positions]
        prompts = core.seg_prompt_tokens(states)
        sam2 = core.require_sam2()
        frames = ex.inputs.sam2_frames.to(prompts.device, prompts.dtype)
        feats = sam2.encode_frames(frames)
        targets = ex.seg_targets.to(prompts.device)  # [O, T, S, S]
        s = targets.shape[-1]
        sums = {"focal": 0.0, "dice": 0.0, "iou": 0.0, "object_score": 0.0}
        n_frames = targets.shape[1]
        preds = []
        for fo in sam2.track_frames(feats, prompts, frame_size=None, cond_frame=0, num_frames=n_frames):
            logits = F.interpolate(fo.decoder_multimask_logits.float(), size=(s, s), mode="bilinear",
                                   align_corners=False)
            terms = sam2_frame_loss(logits, fo.decoder_iou_pred, fo.object_score_logits, targets[:, fo.frame_idx],
                                    cfg.sam2)
            for k, v in terms.items():
                sums[k] = sums[k] + v
            if keep_masks:
                low = F.interpolate(fo.lowres_mask_logits[:, None].float(), size=(s, s), mode="bilinear",
                                    align_corners=False)[:, 0]
                preds.append((low > 0).detach().cpu())
        n_obj = targets.shape[0]
        l_seg = sum(sums.values()) / (n_obj * n_frames)
        total = total + cfg.seg_weight * l_seg
        metrics["loss_seg"] = float(l_seg.detach())
        for k, v in sums.items():
            metrics[f"seg_{k}"] = float(v.detach()) / (n_obj * n_frames)
        if keep_masks and preds:
            extras["pred_masks"] = torch.stack(preds, 1)
    metrics["loss"] = float(total.detach())
    return total, metrics, extras


class UniPixelTrainModule(torch.nn.Module):
    """The model plus its loss as one module, so DDP / FSDP2 / DeepSpeed wrap a forward that covers every parameter
    used (LLM, adapters *and* SAM2). `forward(examples)` -> (mean loss over the examples, summed float metrics)."""

    def __init__(self, model: torch.nn.Module, cfg: LossConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, examples: list, keep_masks: bool = False):
        total = None
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        extras = []
        for ex in examples:
            loss, metrics, extra = example_loss(self.model, ex, self.cfg, keep_masks=keep_masks)
            total = loss if total is None else total + loss
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            extras.append(extra)
        if total is None:  # nothing usable in this micro-batch: a zero that still touches every parameter
            total = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
        n = max(1, len(examples))
        metrics = {k: sums[k] / counts[k] for k in sums}
        metrics["_counts"] = counts  # examples behind each metric (for exact means across ranks)
        return total / n, metrics, extras


def unwrap_core(model):
    """The UniPixel module behind DDP / FSDP / DeepSpeed / peft wrappers."""
    m = model
    for attr in ("module", "base_model", "model"):
        while hasattr(m, attr) and not hasattr(m, "seg_prompt_tokens"):
            m = getattr(m, attr)
    return m
