"""Point-sampled mask losses (Mask2Former / PointRend style), as Pixel-SAIL and Sa2VA train their mask heads.

Instead of averaging BCE and Dice over every pixel, the loss is computed on `num_points` locations per mask: a
fraction `importance_ratio` of them are the most *uncertain* of `oversample x num_points` random candidates (logits
closest to 0), the rest are uniform random points. Pixel-SAIL: 12,544 points, oversample 3, ratio 0.75,
L = 2.0 * BCE + 0.5 * Dice. Per-pixel Dice is `pixelwise.modules.losses.dice_loss` applied to the sampled points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelwise.modules.losses import dice_loss


def _sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """maps [N, H, W], coords [N, P, 2] in [0, 1] (x, y) -> [N, P] bilinear samples."""
    grid = coords[:, :, None] * 2 - 1  # [N, P, 1, 2]
    return F.grid_sample(maps[:, None], grid, mode="bilinear", align_corners=False)[:, 0, :, 0]


def uncertain_points(logits: torch.Tensor, num_points: int, oversample: float = 3.0,
                     importance_ratio: float = 0.75) -> torch.Tensor:
    """[N, H, W] logits -> [N, P, 2] point coordinates in [0, 1], biased towards uncertain (|logit| small) places."""
    n = logits.shape[0]
    cand = torch.rand(n, int(num_points * oversample), 2, device=logits.device)
    uncertainty = -_sample(logits.detach().float(), cand).abs()
    k = int(importance_ratio * num_points)
    idx = uncertainty.topk(k, dim=1).indices
    picked = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - k, 2, device=logits.device)
    return torch.cat([picked, rest], 1)


def point_sampled_mask_loss(logits: torch.Tensor, targets: torch.Tensor, num_points: int = 12544,
                            oversample: float = 3.0, importance_ratio: float = 0.75, bce_weight: float = 2.0,
                            dice_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """logits [N, h, w] (any resolution), targets [N, H, W] in {0, 1}; both are sampled at the same normalised
    points, so the logits need not be upsampled to the target size first. Returns weighted `bce`, `dice` (means
    over the N masks) and their sum `mask`."""
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return {"bce": zero, "dice": zero, "mask": zero}
    with torch.no_grad():
        coords = uncertain_points(logits, num_points, oversample, importance_ratio)
        t = _sample(targets.float(), coords)
    p = _sample(logits.float(), coords)
    bce = F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(1).mean()
    dice = dice_loss(p[:, None, :], t[:, None, :]).mean()  # dice over the sampled points ([N, 1, P] as [.., H, W])
    bce, dice = bce_weight * bce, dice_weight * dice
    return {"bce": bce, "dice": dice, "mask": bce + dice}
