"""The UniPixel training loss of one example: LM cross-entropy on assistant tokens + SAM2 mask losses of every
supervised `<|seg|>` (its pre-norm state -> `seg_head` -> SAM2 prompt tokens on frame 0 -> tracked over the example's
frames with gradients through the memory), as the official model trains."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pixelwise.modules.losses import Sam2LossWeights, dice_loss, lm_loss, sam2_frame_loss, sigmoid_focal_loss


@dataclass
class LossConfig:
    lm_weight: float = 1.0
    seg_weight: float = 1.0
    sam2: Sam2LossWeights = field(default_factory=Sam2LossWeights)
    seg_enabled: bool = True  # stage 1 runs without the SAM2 decoder
    # pixelwise addition for models trained from scratch (0 = the official loss): MSE between the `<|seg|>` prompt
    # tokens and SAM2's own box-prompt tokens of the target's box on the prompted frame. After a stage-0 SAM2
    # (trained on click/box prompts) this tells the LLM *where* the target is in the decoder's language, a dense
    # signal that the mask losses alone give only weakly. Needs sam2_hidden_tokens == 2 (a box is two tokens).
    box_prompt_weight: float = 0.0
    # pixelwise addition for models with `seg_retrieval_dim` (tiny only): cross-entropy between the `<|seg|>`
    # retrieval over SAM2's grid cells and the share of the target's mask in each cell, on the prompted frame.
    retrieval_weight: float = 0.0
    # pixelwise addition for models trained from scratch (0 = off): each visual token of the tower, as the LLM
    # receives it, must point (cosine) towards the LLM's own embedding of the word naming the colour and the shape of
    # the object covering its cell (" red", " circle"), against the other colours and shapes. Without it the tiny
    # model's LLM learned to ignore its visual tokens (zeroing them moved the loss by 0.01 nats); the words are the
    # LLM's own, so a token that names its object is one the LLM can already read. The same for each `<|mem|>`
    # embedding (a region's pooled features) and the object the region is. Needs PixelWorld scene graphs.
    visual_words_weight: float = 0.0
    visual_words_temperature: float = 0.1
    # which words name an object (`unipixel_data.WORD_KINDS`): colour and shape until session 13, which measured that
    # a wrong pick mostly misses the texture or size the phrase asks for, the two kinds nothing was taught to name
    visual_word_kinds: tuple[str, ...] = ("color", "shape")
    # models with `seg_key_words` (tiny only; 0 = off): the same naming term on every retrieval key (through the
    # model's key -> word head) against the object under its cell, so that the keys carry what the query asks for
    key_words_weight: float = 0.0
    # models with `option_pointer` (tiny only): cross-entropy of the pointer over a question's options at each
    # answer letter (`option_loss`); no effect on other models
    option_weight: float = 1.0

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
    objects = out.objects[1] if out.objects is not None else None  # `llm_object_view`: computed for the LLM
    if cfg.option_weight and unwrap_core(model).config.option_pointer:
        l_opt = option_loss(unwrap_core(model), out, ids, ex.labels_mask)
        if l_opt is not None:
            total = total + cfg.option_weight * l_opt
            metrics["loss_option"] = float(l_opt.detach())
    if cfg.seg_enabled and ex.seg_targets is not None and ex.seg_index:
        core = unwrap_core(model)
        positions = [out.seg_positions[k] for k in ex.seg_index]
        states = out.prenorm_hidden[positions]
        sam2 = core.require_sam2()
        frames = ex.inputs.sam2_frames.to(states.device, states.dtype)
        feats = sam2.encode_frames(frames)
        visual = core.retrieval_visual(out.video_embeds, ex.inputs.video_grid_thw)
        later = core.later_frames(feats)
        keys, objects = (core.retrieval_keys(feats[0], visual, out.objects, later) if core.config.seg_retrieval_dim
                         else (None, None))
        words = core.seg_words(ids, positions) if core.config.seg_ground_words else None
        prompts, retrieval = core.seg_prompts(states, feats[0], visual, keys=keys, desc=objects, words=words)
        targets = ex.seg_targets.to(prompts.device)  # [O, T, S, S]
        n_frames = targets.shape[1]
        sums, preds = tracked_mask_losses(sam2, feats, prompts, targets, cfg.sam2, keep_masks)
        n_obj = targets.shape[0]
        l_seg = sum(sums.values()) / (n_obj * n_frames)
        total = total + cfg.seg_weight * l_seg
        metrics["loss_seg"] = float(l_seg.detach())
        if cfg.retrieval_weight and retrieval is not None:
            l_ret = retrieval_loss(retrieval, targets[:, 0], core.retrieval_grid(feats[0]))
            if l_ret is not None:
                total = total + cfg.retrieval_weight * l_ret
                metrics["loss_retrieval"] = float(l_ret.detach())
        if cfg.key_words_weight and keys is not None and ex.cell_words is not None \
                and len(ex.cell_words) == len(keys) and core.config.seg_key_words:
            term = visual_words_loss(core.seg_key_words(keys), ex.cell_words.to(keys.device),
                                     core.language_model.embed_tokens.weight, ex.visual_word_ids,
                                     cfg.visual_words_temperature)
            if term is not None:
                total = total + cfg.key_words_weight * term
                metrics["loss_key_words"] = float(term.detach())
        if cfg.box_prompt_weight:
            l_box = box_prompt_loss(sam2, prompts, targets[:, 0])
            if l_box is not None:
                total = total + cfg.box_prompt_weight * l_box
                metrics["loss_box_prompt"] = float(l_box.detach())
        for k, v in sums.items():
            metrics[f"seg_{k}"] = float(v.detach()) / (n_obj * n_frames)
        if keep_masks and preds:
            extras["pred_masks"] = torch.stack(preds, 1)
    if cfg.visual_words_weight and objects is not None and ex.cell_words is not None \
            and len(ex.cell_words) == len(objects):  # each proposal's descriptor names its object
        core = unwrap_core(model)
        words = core.language_model.embed_tokens.weight
        term = visual_words_loss(core.object_keys.to_words(objects), ex.cell_words.to(objects.device), words,
                                 ex.visual_word_ids, cfg.visual_words_temperature)
        if term is not None:
            total = total + cfg.visual_words_weight * term
            metrics["loss_object_words"] = float(term.detach())
    if cfg.visual_words_weight and ex.visual_words is not None:
        words = unwrap_core(model).language_model.embed_tokens.weight
        for name, feats, labels in (("loss_visual_words", out.video_embeds, ex.visual_words),
                                    ("loss_memory_words", out.mem_embeds, ex.mem_words)):
            if feats is None or labels is None or len(labels) != len(feats):
                continue
            term = visual_words_loss(feats, labels.to(feats.device), words, ex.visual_word_ids,
                                     cfg.visual_words_temperature)
            if term is not None:
                total = total + cfg.visual_words_weight * term
                metrics[name] = float(term.detach())
    metrics["loss"] = float(total.detach())
    return total, metrics, extras


def option_loss(core, out, ids: torch.Tensor, labels_mask: torch.Tensor) -> torch.Tensor | None:
    """`config.option_pointer`: mean cross-entropy of the pointer over each question's options, at every supervised
    answer letter after `(` in an assistant turn that answers options; None if the example has none."""
    seq = ids.tolist()
    supervised = labels_mask.reshape(-1).tolist()
    h = out.prenorm_hidden
    terms, count = [], 0
    for positions, letters, end in core.option_turns(seq).values():
        picks = [(p, letters.index(seq[p + 1])) for p in range(positions[-1], end - 1)
                 if seq[p] in core._option_open and seq[p + 1] in letters and supervised[p + 1]]
        if picks:
            logits = core.option_scores(h[[p for p, _ in picks]], h[positions])
            target = torch.tensor([k for _, k in picks], device=logits.device)
            terms.append(F.cross_entropy(logits.float(), target, reduction="sum"))
            count += len(picks)
    return torch.stack(terms).sum() / count if terms else None


def visual_words_loss(tokens: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor, word_ids: torch.Tensor,
                      temperature: float) -> torch.Tensor | None:
    """Mean over label kinds (columns of `labels`: colour, shape, ...) of the cross-entropy of each labelled token [N, D] over the cosine
    similarities to its kind's class words (the LLM's embeddings, not trained by this term); None if none labelled."""
    feats = F.normalize(tokens.float(), dim=-1)
    terms = []
    for k in range(labels.shape[1]):
        keep = labels[:, k] >= 0
        if not keep.any():
            continue
        words = F.normalize(embeddings[word_ids[k].to(embeddings.device)].detach().float(), dim=-1)
        logits = feats[keep] @ words.T / temperature
        terms.append(F.cross_entropy(logits, labels[keep, k]))
    return torch.stack(terms).mean() if terms else None


def tracked_mask_losses(sam2, feats, prompts: torch.Tensor, targets: torch.Tensor, weights: Sam2LossWeights,
                        keep_masks: bool = False) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Track O prompted objects (prompt tokens [O, n, C] on frame 0) through the frames of `feats` (a
    `FrameSource`) and sum SAM2's mask losses against `targets` bool [O, T, S, S] over the frames.

    -> (summed loss terms {focal, dice, iou, object_score}, per-frame predicted masks bool [O, S, S] if keep_masks).
    """
    s, n_frames = targets.shape[-1], targets.shape[1]
    sums: dict = {"focal": 0.0, "dice": 0.0, "iou": 0.0, "object_score": 0.0}
    refine = hasattr(sam2, "mask_refiner") and any(p.requires_grad for p in sam2.mask_refiner.parameters())
    if refine:  # the learned upsampler's own terms, on its output at the input size
        sums.update({"refine_focal": 0.0, "refine_dice": 0.0})
    preds = []
    for fo in sam2.track_frames(feats, prompts, frame_size=(s, s) if refine else None, cond_frame=0,
                                num_frames=n_frames):
        target = targets[:, fo.frame_idx]
        logits = F.interpolate(fo.decoder_multimask_logits.float(), size=(s, s), mode="bilinear", align_corners=False)
        terms = sam2_frame_loss(logits, fo.decoder_iou_pred, fo.object_score_logits, target, weights,
                                iou_logits=fo.decoder_iou_logits)
        if refine:
            present = target.flatten(1).any(-1).float()
            t = target.float()
            out = fo.mask_logits.float()
            terms["refine_focal"] = (weights.focal * sigmoid_focal_loss(out, t, weights.focal_alpha,
                                                                        weights.focal_gamma) * present).sum()
            terms["refine_dice"] = (weights.dice * dice_loss(out, t) * present).sum()
        for k, v in terms.items():
            sums[k] = sums[k] + v
        if keep_masks:
            low = fo.mask_logits if refine else F.interpolate(fo.lowres_mask_logits[:, None].float(), size=(s, s),
                                                              mode="bilinear", align_corners=False)[:, 0]
            preds.append((low > 0).detach().cpu())
    return sums, preds


def retrieval_loss(logits: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor | None:
    """Cross-entropy of retrieval logits [O, h*w] against each object's share of mask pixels per grid cell (masks
    [O, S, S] of the prompted frame; objects absent there are skipped; None when all are)."""
    share = F.adaptive_avg_pool2d(masks.float()[:, None], tuple(int(v) for v in grid)).flatten(1)  # [O, h*w]
    present = share.sum(-1) > 0
    if not bool(present.any()):
        return None
    target = share[present] / share[present].sum(-1, keepdim=True)
    return -(target * torch.log_softmax(logits[present].float(), -1)).sum(-1).mean()


def box_prompt_loss(sam2, prompts: torch.Tensor, masks: torch.Tensor) -> torch.Tensor | None:
    """Mean squared distance between prompt tokens [O, 2, C] and SAM2's box-prompt tokens of the boxes of `masks`
    [O, S, S] (objects absent from the frame are skipped; None when all are). The teacher tokens carry no gradient."""
    if prompts.shape[1] != 2:
        raise ValueError(f"box_prompt_weight needs 2 prompt tokens per object, the model has {prompts.shape[1]}")
    present = masks.flatten(1).any(-1)
    if not bool(present.any()):
        return None
    m = masks[present]
    ys = m.any(-1)  # [O, S] rows with pixels
    xs = m.any(-2)
    idx = torch.arange(m.shape[-1], device=m.device)
    x0 = torch.where(xs, idx, m.shape[-1]).amin(-1)
    x1 = torch.where(xs, idx, -1).amax(-1) + 1
    y0 = torch.where(ys, idx, m.shape[-2]).amin(-1)
    y1 = torch.where(ys, idx, -1).amax(-1) + 1
    corners = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y1], -1)], 1).to(prompts.dtype)
    labels = torch.tensor([2, 3], device=m.device).expand(m.shape[0], 2)
    with torch.no_grad():
        teacher = sam2.sam_prompt_encoder.embed_points(corners, labels, pad=False)
    return ((prompts[present] - teacher) ** 2).mean()


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
        # Every trainable parameter takes part, with weight 0 where these examples did not use it (SAM2 on a QA
        # example, the `<|ref|>` encoder without point/box prompts), so every rank of a DDP / FSDP2 run reduces the
        # same gradients whatever its examples were (FSDP2 reduce-scatters only parameters that have a gradient).
        # Sharded parameters of other FSDP2 units (DTensors here) always run and are left alone.
        from torch.distributed.tensor import DTensor

        touch = sum(p.view(-1)[:1].sum() for p in self.model.parameters()
                    if p.requires_grad and not isinstance(p, DTensor)) * 0.0
        total = touch if total is None else total + touch
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
