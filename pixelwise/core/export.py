"""Writing a result: `result.json` (COCO RLE masks), per-object mask PNGs, and overlays drawn on its frames.

`Result` is plain data; this module turns it into files and pictures with `core.viz`. It never imports `results`
(imports run one way: results -> export -> viz): it reads the fields every result has (`answer`, `objects`,
`frame_indices`, `media`, `prompts`, `extras`, `to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core import masks as mask_ops
from pixelwise.core import viz
from pixelwise.core.clip import Clip
from pixelwise.core.io import atomic_write_text
from pixelwise.core.media import open_media

# The overlay animation of a long result (over every frame of a long clip) is a preview drawn on at most this many
# evenly spaced frames, so saving holds a bounded number of frames; masks and JSON cover all of them.
OVERLAY_MAX_FRAMES = 240


def overlay_frames(num_frames: int) -> list[int]:
    """The result frames an overlay animation shows: all, or OVERLAY_MAX_FRAMES evenly spaced ones."""
    if num_frames <= OVERLAY_MAX_FRAMES:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (OVERLAY_MAX_FRAMES - 1)) for i in range(OVERLAY_MAX_FRAMES)})


def overlay_result(frames: np.ndarray | Sequence[np.ndarray], result: Any, shown: Sequence[int] | None = None,
                   colors: Sequence[tuple[int, int, int]] | None = None) -> list[np.ndarray]:
    """One overlay per frame of the result (`frames` are the result's frames), or per result frame in `shown`
    (then `frames` are those frames, in that order). Each object keeps one colour (contrasting with what it covers,
    `viz.object_colors`); the result's prompts are drawn on the frames they belong to."""
    shown = list(range(len(result.frame_indices))) if shown is None else list(shown)
    if len(frames) != len(shown):
        raise ValueError(f"{len(frames)} frames given for {len(shown)} frames of the result")
    ids = [o.id for o in result.objects]
    labels = [o.label or f"[{o.id}]" for o in result.objects]
    if colors is None:
        colors = result_colors(frames, result, shown)
    return [
        viz.overlay_masks(frame, [o.masks[t] for o in result.objects], ids, labels,
                          prompts=[p for p in result.prompts if p.frame == t], colors=colors)
        for frame, t in zip(frames, shown)
    ]


def result_colors(frames: Sequence[np.ndarray], result: Any, shown: Sequence[int] | None = None
                  ) -> list[tuple[int, int, int]]:
    """One colour per object of the result, contrasting with what its masks cover on `frames` (`viz.object_colors`):
    what overlays draw with and what an answer's spans should be highlighted in."""
    shown = list(range(len(result.frame_indices))) if shown is None else list(shown)
    return viz.object_colors(frames, [[o.masks[t] for t in shown] for o in result.objects], [o.id for o in result.objects])


def save_result(result: Any, out_dir: str | Path, clip: Clip | None = None) -> dict[str, Path]:
    """Write `result.json` (RLE masks), per-object mask PNGs and an overlay (PNG or GIF) on `clip`, or on the
    result's own `media` when no clip is given; edited/generated frames in `extras["edited_frames"]` go to
    `edited.png` (one frame) or `edited/<frame>.png` + `edited.gif`. Returns the paths written, by kind."""
    num_frames = len(result.frame_indices)
    shown = overlay_frames(num_frames)
    shown_frames, fps = None, None
    if clip is None and isinstance(result.media, Clip):
        clip = result.media
    elif clip is None and result.media is not None:
        read = open_media(result.media).read([result.frame_indices[t] for t in shown])
        shown_frames, fps = read.frames, read.fps
    if clip is not None:
        if len(clip.frames) != num_frames:
            raise ValueError(f"{len(clip.frames)} frames given for a result of {num_frames} frames")
        shown_frames, fps = clip.frames[shown], clip.fps

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"json": atomic_write_text(out / "result.json", json.dumps(result.to_json()))}
    for o in result.objects:
        for t, m in enumerate(o.masks):
            name = f"object{o.id}.png" if num_frames == 1 else f"object{o.id}_frame{result.frame_indices[t]:05d}.png"
            mask_ops.save_mask_png(out / "masks" / name, m)
    if result.objects:
        written["masks"] = out / "masks"
    if shown_frames is not None:
        frames = overlay_result(shown_frames, result, shown)
        if len(frames) == 1:
            written["overlay"] = viz.save_image(out / "overlay.png", frames[0])
        else:
            written["overlay"] = viz.save_animation(out / "overlay.gif", frames, fps=fps or 4.0)
    edited = result.extras.get("edited_frames")
    if edited is not None:  # media produced by an editing/generation back-end (VITRON): lossless PNG frames
        edited = np.asarray(edited, np.uint8)
        if len(edited) == 1:
            written["edited"] = viz.save_image(out / "edited.png", edited[0])
        else:
            names = result.frame_indices if len(result.frame_indices) == len(edited) else range(len(edited))
            for n, f in zip(names, edited):
                viz.save_image(out / "edited" / f"{n:05d}.png", f)
            written["edited"] = out / "edited"
            written["edited_animation"] = viz.save_animation(out / "edited.gif", list(edited),
                                                             fps=(clip.fps if clip is not None else None) or 8.0)
    return written
