"""Qwen2.5-VL inputs shared by the models built on it (UniPixel, and PixelLM / UFO through `vl_processing`):
frame resizing (qwen-vl-utils' `smart_resize`), patchify in the fast processors' arithmetic, the ChatML rendering of
the chat template, and the official frame-list user turn. Nothing here knows about segmentation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixelwise.core.errors import MediaError, PromptError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
VISION_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
VIDEO_PAD = "<|video_pad|>"

# Official inference budgets (tools/inference.py): min 128*28*28; max 256*28*28 * int(16 / num_frames).
DEFAULT_MIN_PIXELS = 128 * 28 * 28
DEFAULT_MAX_PIXELS_PER_16 = 256 * 28 * 28
DEFAULT_FPS = 2.0
_MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = 16384 * 28 * 28) -> tuple[int, int]:
    """qwen-vl-utils' size rule: both sides multiples of `factor`, area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > _MAX_RATIO:
        raise MediaError(f"aspect ratio of a {width}x{height} frame exceeds {_MAX_RATIO}:1")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def default_max_pixels(num_frames: int) -> int:
    """Official per-frame budget: 256*28*28 * int(16 / n) (a single image may use 16x that)."""
    return DEFAULT_MAX_PIXELS_PER_16 * max(1, int(16 / max(1, num_frames)))


def resize_for_llm(frames: np.ndarray, min_pixels: int, max_pixels: int, temporal_patch_size: int = 2,
                   factor: int = 28) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T_even, h, w, 3]: smart-resize each frame (PIL bicubic), pad to a multiple of
    the temporal patch by repeating the last frame."""
    frames = check_frames(frames)
    h, w = frames.shape[1:3]
    rh, rw = smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    out = [np.asarray(Image.fromarray(f).resize((rw, rh), resample=Image.BICUBIC)) for f in frames]
    while len(out) % temporal_patch_size:
        out.append(out[-1])
    return np.stack(out)


def patchify(llm_frames: np.ndarray, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2,
             mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized frames -> (`pixel_values_videos` float32 [N, 3*tp*p*p], `video_grid_thw` int64 [1, 3]).

    Same arithmetic as transformers' fast processors: the 1/255 rescale is folded into mean and std (both multiplied
    by 255 in float32), then `(x - mean) / std` in float32.
    """
    x = torch.from_numpy(np.ascontiguousarray(llm_frames)).permute(0, 3, 1, 2).to(torch.float32)  # T,C,H,W
    t, c, h, w = x.shape
    if t % temporal_patch_size or h % (patch_size * merge_size) or w % (patch_size * merge_size):
        raise MediaError(f"frames of shape {tuple(llm_frames.shape)} are not resized/padded for patchify")
    scale = 1.0 / (1 / 255)
    m = torch.tensor(mean, dtype=torch.float32) * scale
    s = torch.tensor(std, dtype=torch.float32) * scale
    x = (x - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1)
    gt, gh, gw = t // temporal_patch_size, h // patch_size, w // patch_size
    x = x.reshape(gt, temporal_patch_size, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size,
                  patch_size)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    pv = x.reshape(gt * gh * gw, c * temporal_patch_size * patch_size * patch_size).contiguous()
    return pv, torch.tensor([[gt, gh, gw]], dtype=torch.int64)


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise MediaError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    return frames


def render_chat(messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                assistant_prefix: str = "", system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """Qwen2.5-VL ChatML as the checkpoint's chat template renders it (visual items become one placeholder).

    `assistant_prefix` primes the answer (e.g. "The best option is (") after the generation prompt.
    """
    parts: list[str] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ("system", "user", "assistant"):
            raise PromptError(f"message {i}: unknown role {role!r}")
        if i == 0 and role != "system":
            parts.append(f"<|im_start|>system\n{system_prompt}<|im_end|>\n")
        content = msg.get("content", "")
        parts.append(f"<|im_start|>{role}\n")
        if isinstance(content, str):
            parts.append(content)
        else:
            for item in content:
                kind = item.get("type")
                if kind in ("image", "video") or "image" in item or "video" in item or "image_url" in item:
                    parts.append(VISION_PLACEHOLDER)
                elif "text" in item:
                    parts.append(item["text"])
        parts.append("<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + assistant_prefix)
    elif assistant_prefix:
        raise PromptError("assistant_prefix needs add_generation_prompt=True")
    return "".join(parts)


def video_message(text: str, num_frames: int, min_pixels: int | None = None, max_pixels: int | None = None,
                  ) -> dict[str, Any]:
    """The official user turn: the frame list as one video item, then the question."""
    item: dict[str, Any] = {"type": "video", "video": [f"<frame {i}>" for i in range(num_frames)]}
    item["min_pixels"] = DEFAULT_MIN_PIXELS if min_pixels is None else min_pixels
    item["max_pixels"] = default_max_pixels(num_frames) if max_pixels is None else max_pixels
    return {"role": "user", "content": [item, {"type": "text", "text": text}]}
