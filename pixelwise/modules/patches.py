"""Image -> patch vectors, visual prompts -> masks -> patch coverage: the input side of encoder-free families.

Pixel-SAIL (and VITRON's front end here) feed raw P x P patches to a linear layer, and mark the patches a region
prompt covers. These helpers do the resizing and bookkeeping once for both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from pixelwise.core.errors import MediaError, PromptError
from pixelwise.core.prompts import Box, MaskPrompt, Point, VisualPrompt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def grid_size(height: int, width: int, image_size: int, patch_size: int) -> tuple[int, int]:
    """(h, w) patch grid: the long side becomes `image_size`, the short side is rounded *up* to a multiple of the
    patch (Pixel-SAIL's rule, with the long side fixed instead of capped)."""
    if height <= 0 or width <= 0:
        raise MediaError(f"frame of size {width}x{height} is empty")
    scale = image_size / max(height, width)
    gh = max(1, math.ceil(round(height * scale, 6) / patch_size))
    gw = max(1, math.ceil(round(width * scale, 6) / patch_size))
    return gh, gw


def patchify_frames(frames: np.ndarray, image_size: int, patch_size: int,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    ) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 [T, H, W, 3] -> (float [T, h*w, 3*P*P] in (C, py, px) order per patch, (h, w)).

    Frames are resized (OpenCV area/linear) to (h*P, w*P) and normalised with ImageNet mean/std.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    t, hgt, wid = frames.shape[:3]
    gh, gw = grid_size(hgt, wid, image_size, patch_size)
    th, tw = gh * patch_size, gw * patch_size
    interp = cv2.INTER_AREA if th < hgt or tw < wid else cv2.INTER_LINEAR
    resized = np.stack([f if f.shape[:2] == (th, tw) else cv2.resize(f, (tw, th), interpolation=interp)
                        for f in frames])
    x = torch.from_numpy(resized).float().div_(255.0)
    x = (x - torch.tensor(mean)) / torch.tensor(std)  # [T, th, tw, 3]
    x = x.view(t, gh, patch_size, gw, patch_size, 3).permute(0, 1, 3, 5, 2, 4)  # T, gh, gw, C, py, px
    return x.reshape(t, gh * gw, 3 * patch_size * patch_size).contiguous(), (gh, gw)


def prompt_mask(prompt: VisualPrompt, height: int, width: int, point_radius: float = 4.0) -> np.ndarray:
    """A region prompt as a bool [H, W] mask: masks as they are, boxes filled, points as a small disc (so that a
    click always covers the patch it falls in)."""
    prompt.validate(height, width, num_frames=max(1, getattr(prompt, "frame", 0) + 1))
    if isinstance(prompt, MaskPrompt):
        return np.asarray(prompt.mask, bool)
    out = np.zeros((height, width), np.uint8)
    if isinstance(prompt, Box):
        x1, y1 = int(math.floor(prompt.x1)), int(math.floor(prompt.y1))
        x2, y2 = int(math.ceil(prompt.x2)), int(math.ceil(prompt.y2))
        out[y1:y2, x1:x2] = 1
    elif isinstance(prompt, Point):
        cv2.circle(out, (int(round(prompt.x)), int(round(prompt.y))), int(round(point_radius)), 1, -1)
    else:
        raise PromptError(f"unsupported prompt type {type(prompt).__name__}")
    return out.astype(bool)


def patch_coverage(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """bool [h*w]: a patch is covered if *any* pixel of the mask falls in it (Pixel-SAIL's rule), computed on the
    mask resized to the patch grid's pixel frame."""
    gh, gw = grid
    m = np.asarray(mask, np.uint8)
    # max-pool the mask into the grid: cell (i, j) covers rows [i*H/gh, (i+1)*H/gh)
    h, w = m.shape
    ys = np.minimum((np.arange(h) * gh) // h, gh - 1)
    xs = np.minimum((np.arange(w) * gw) // w, gw - 1)
    cov = np.zeros((gh, gw), bool)
    rr, cc = np.nonzero(m)
    cov[ys[rr], xs[cc]] = True
    return cov.reshape(-1)


def region_masks(prompts: Sequence[VisualPrompt], height: int, width: int, num_frames: int = 1) -> list[np.ndarray]:
    for p in prompts:
        p.validate(height, width, num_frames)
    return [prompt_mask(p, height, width) for p in prompts]
