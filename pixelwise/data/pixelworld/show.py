"""Render one PixelWorld sample for a person: media with target masks and visual prompts, plus question/answer text.

Images give a PNG, videos an animated GIF; editing samples show the source next to the edited result.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pixelwise.core import viz
from pixelwise.core.errors import FormatError
from pixelwise.core.io import atomic_write
from pixelwise.core.masks import rle_decode
from pixelwise.data.pixelworld import native

SCALE = 3


def _draw_prompts(img: np.ndarray, prompts: list[dict[str, Any]], t: int, scale: int) -> None:
    for p in prompts:
        if p.get("frame", 0) != t:
            continue
        if p["type"] == "point":
            c = (int(p["x"] * scale + scale // 2), int(p["y"] * scale + scale // 2))
            cv2.circle(img, c, 2 * scale, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(img, c, 2 * scale, (0, 0, 0), 1, cv2.LINE_AA)
        elif p["type"] == "box":
            cv2.rectangle(img, (p["x1"] * scale, p["y1"] * scale), (p["x2"] * scale - 1, p["y2"] * scale - 1),
                          (255, 255, 255), 2)
        else:
            m = rle_decode(p["rle"]).astype(np.uint8)
            m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
            cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, cs, -1, (255, 255, 255), 2)


def _text_panel(lines: list[str], width: int) -> np.ndarray:
    chars = max(20, width // 8)
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, chars) or [""]
    h = 8 + 16 * len(wrapped)
    panel = np.full((h, width, 3), 255, np.uint8)
    for k, line in enumerate(wrapped):
        cv2.putText(panel, line, (4, 18 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
    return panel


def _decode_targets(targets: list[dict[str, Any]], T: int, H: int, W: int) -> list[np.ndarray]:
    out = []
    for tgt in targets:
        m = np.zeros((T, H, W), bool)
        for t, rle in enumerate(tgt["masks"]):
            if rle is not None:
                m[t] = rle_decode(rle, (H, W))
        out.append(m)
    return out


def _up(frame: np.ndarray, scale: int) -> np.ndarray:
    return cv2.resize(frame, (frame.shape[1] * scale, frame.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def render_sample(root: str | Path, sample: dict[str, Any], scale: int = SCALE) -> list[np.ndarray]:
    """Frames of the visualisation (one for an image sample)."""
    frames = native.read_media(root, sample["media"])
    T, H, W = sample["num_frames"], sample["height"], sample["width"]
    if len(frames) != T:
        raise FormatError(f"{sample['id']}: media has {len(frames)} frames, the sample says {T}")
    masks = _decode_targets(sample["targets"], T, H, W)
    ids = [t["obj_id"] for t in sample["targets"]]
    tgt_frames = native.read_media(root, sample["target_media"]) if sample.get("target_media") else None
    tgt_masks = _decode_targets(sample.get("target_targets", []), T, H, W)
    tgt_ids = [t["obj_id"] for t in sample.get("target_targets", [])]
    lines = [f"[{sample['task']}] {sample['id']}", "Q: " + sample["question"], "A: " + sample["answer"]]
    if sample.get("correct"):
        lines.append(f"correct: ({sample['correct']})")
    out = []
    for t in range(T):
        img = _up(viz.overlay_masks(frames[t], [m[t] for m in masks], ids, alpha=0.0, scale=1), scale)
        _draw_prompts(img, sample.get("prompts") or [], t, scale)
        if tgt_frames is not None:
            right = _up(viz.overlay_masks(tgt_frames[t], [m[t] for m in tgt_masks], tgt_ids, alpha=0.0, scale=1), scale)
            img = np.concatenate([img, np.full((img.shape[0], 6, 3), 255, np.uint8), right], 1)
        if T > 1:
            cv2.putText(img, f"t={t}", (4, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
        out.append(img)
    panel = _text_panel(lines, out[0].shape[1])
    return [np.concatenate([f, panel], 0) for f in out]


def render_strip(root: str | Path, sample: dict[str, Any], num: int = 4, scale: int = 2) -> np.ndarray:
    """One PNG-able picture of a (video) sample: `num` evenly spaced frames side by side over the text panel."""
    frames = render_sample(root, sample, scale=scale)
    panel_h = frames[0].shape[0] - sample["height"] * scale
    media = [f[: f.shape[0] - panel_h] for f in frames]
    picks = sorted({round(k * (len(media) - 1) / max(num - 1, 1)) for k in range(num)})
    for p in sample.get("prompts") or []:  # always show the frames the visual prompts are drawn on
        if p["frame"] not in picks:
            picks[min(range(len(picks)), key=lambda k: abs(picks[k] - p["frame"]))] = p["frame"]
    picks = sorted(set(picks))
    gap = np.full((media[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in picks for x in (media[t], gap)][:-1], 1)
    lines = [f"[{sample['task']}] {sample['id']}  (frames {', '.join(map(str, picks))})",
             "Q: " + sample["question"], "A: " + sample["answer"]]
    if sample.get("correct"):
        lines.append(f"correct: ({sample['correct']})")
    return np.concatenate([row, _text_panel(lines, row.shape[1])], 0)


def show(root: str | Path, index: int, out: str | Path | None = None, strip: int = 0) -> Path:
    if index < 0:
        raise FormatError(f"{root}: index must be >= 0, got {index}")
    sample = None
    count = 0
    for count, s in enumerate(native.iter_samples(root), 1):  # stop at the line asked for: folders can be large
        if count - 1 == index:
            sample = s
            break
    if sample is None:
        raise FormatError(f"{root}: index {index} out of range ({count} samples)")
    if strip:
        out = Path(out) if out is not None else Path(root) / "show" / f"{sample['id']}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        viz.save_image(out, render_strip(root, sample, num=strip))
        return out
    frames = render_sample(root, sample)
    if out is None:
        out = Path(root) / "show" / (sample["id"] + (".gif" if len(frames) > 1 else ".png"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(frames) == 1 and out.suffix.lower() != ".gif":
        viz.save_image(out, frames[0])
    elif out.suffix.lower() == ".gif":
        save_gif(out, frames, fps=float(sample.get("fps") or 8.0))
    else:
        viz.save_animation(out, frames, fps=float(sample.get("fps") or 8.0))
    return out


def save_gif(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """GIF with one palette fitted to every frame (median cut, no dithering): PIL's default web palette turns a
    saturated blue into purple, which would contradict the answer text printed under it."""
    from PIL import Image


    stride = max(1, len(frames) // 8)
    sheet = Image.fromarray(np.concatenate(frames[::stride], 0))
    pal = sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    images = [Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, round(1000 / fps)), loop=0)
    return path
