"""Training losses shared by the pixel-level families: LM cross-entropy on assistant tokens and SAM2's mask losses.

SAM2 (`training/loss_fns.py: MultiStepMultiMasksAndIous`, as UniPixel uses it):

* focal loss (alpha 0.25, gamma 2) averaged over the pixels of the S x S logits, dice loss with +1 smoothing;
* with multimask outputs (3 candidates per frame) focal + dice are back-propagated only for the candidate with the
  lowest `w_focal * focal + w_dice * dice`; the IoU-prediction loss (L1 against the candidate's actual IoU) is
  averaged over all candidates;
* mask, dice and IoU terms count only where the object is present in the frame; the object-score loss is a plain BCE
  against "present";
* every term is divided by the number of objects, summed over frames and divided by the number of frames.

Official weights (UniPixel): focal 100, dice 5, IoU 5, object score 5. All configurable (`Sam2LossWeights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Sam2LossWeights:
    focal: float = 100.0
    dice: float = 5.0
    iou: float = 5.0
    object_score: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # "l1": the official L1 between the sigmoid IoU prediction and the actual IoU. Its gradient vanishes once the
    # sigmoid saturates, which a from-scratch SAM2 reaches early (every IoU is ~0 at first): the head then predicts 0
    # for every candidate forever and selection degrades to "candidate 0" (measured on the session-2 default model:
    # picked IoU 0.17 where the best candidate had 0.78). "bce": binary cross-entropy on the IoU logits against the
    # actual IoU, whose gradient (sigmoid - IoU) never vanishes.
    iou_loss: str = "l1"


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, labels_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over positions whose *target* token is supervised (`labels_mask` [L] bool).

    logits [L, V] (position i predicts token i+1); mean over supervised targets (0 when there is none).
    """
    target_ok = labels_mask[1:]
    if not bool(target_ok.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:-1][target_ok].float(), input_ids[1:][target_ok])


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       ) -> torch.Tensor:
    """Per-mask focal loss averaged over pixels: logits/targets [..., H, W] -> [...]."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss with +1 smoothing: [..., H, W] -> [...]."""
    prob = logits.sigmoid().flatten(-2)
    t = targets.flatten(-2)
    num = 2 * (prob * t).sum(-1)
    den = prob.sum(-1) + t.sum(-1)
    return 1 - (num + 1) / (den + 1)


def actual_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).flatten(-2)
    t = targets.flatten(-2) > 0.5
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return inter / union.clamp(min=1.0)


def sam2_frame_loss(multimask_logits: torch.Tensor, iou_pred: torch.Tensor, object_score_logits: torch.Tensor,
                    targets: torch.Tensor, w: Sam2LossWeights, iou_logits: torch.Tensor | None = None,
                    ) -> dict[str, torch.Tensor]:
    """One frame, O objects: multimask logits [O, K, S, S], iou_pred [O, K], object scores [O], targets bool [O, S, S].

    Returns the *sums over objects* of each weighted term (the caller divides by objects and frames).
    """
    t = targets.to(multimask_logits.dtype).unsqueeze(1).expand_as(multimask_logits)
    focal = sigmoid_focal_loss(multimask_logits, t, w.focal_alpha, w.focal_gamma)  # [O, K]
    dice = dice_loss(multimask_logits, t)  # [O, K]
    combo = w.focal * focal + w.dice * dice
    best = combo.argmin(dim=1)
    rows = torch.arange(combo.shape[0], device=combo.device)
    present = targets.flatten(1).any(-1).to(multimask_logits.dtype)  # [O]
    with torch.no_grad():
        iou_true = actual_iou(multimask_logits, t)
    if w.iou_loss == "bce":
        if iou_logits is None:
            raise ValueError("iou_loss 'bce' needs the decoder's IoU logits")
        iou_l1 = F.binary_cross_entropy_with_logits(iou_logits.float(), iou_true, reduction="none").mean(1)
    elif w.iou_loss == "l1":
        iou_l1 = (iou_pred.float() - iou_true).abs().mean(1)
    else:
        raise ValueError(f"iou_loss {w.iou_loss!r}: use l1 or bce")
    score = F.binary_cross_entropy_with_logits(object_score_logits.float(), present.float(), reduction="none")
    return {
        "focal": (w.focal * focal[rows, best] * present).sum(),
        "dice": (w.dice * dice[rows, best] * present).sum(),
        "iou": (w.iou * iou_l1 * present).sum(),
        "object_score": (w.object_score * score).sum(),
    }
