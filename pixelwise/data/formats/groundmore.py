"""GroundMoRe: `{"videos": {vid: {"questions": {qid: {question, answer, obj_id, q_type, action_start,
action_end}}}}}` + `<vid>/images/frame_XXXXXX.jpg` + `<vid>/masks/frame_XXXXXX.png` (palette index = obj_id).

One sample per question over the 20 frames the protocol samples (`linspace(0, n − 1, 20)`, frames in *sorted*
order — the official script's unsorted `os.listdir` is a bug we do not reproduce). Ground truth on a sampled frame
is `mask == obj_id` inside the action window and empty outside it (a missing mask file is empty too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelwise.core.errors import FormatError
from pixelwise.data.formats.sample import PngTrack, Sample, image_size, load_json, require

META_NAMES = ("test_v2.json", "groundmore_test.json")


def groundmore_window(num_frames: int, action_start: int, action_end: int, samples: int = 20) -> list[tuple[int, bool]]:
    """GroundMoRe's scored frames: `samples` indices from linspace(0, n − 1) (truncated), each with whether it lies
    inside the action window [action_start, action_end]. Outside the window the ground truth is empty, so a model
    must predict nothing there to score.
    """
    idx = np.linspace(0, num_frames - 1, samples).astype(int)
    return [(int(i), action_start <= int(i) <= action_end) for i in idx]


def groundmore_action_frames(clip_window_start: str, start: str, end: str, fps: int = 6) -> tuple[int, int]:
    """(action_start, action_end) frame indices from GroundMoRe time strings ("M:S" or "H:M:S"), at 6 fps:
    start = (t(start) − t(clip)) × fps, end = (t(end) − t(clip)) × fps − 1.
    """

    def seconds(s: str) -> int:
        total = 0
        for part in s.split(":"):
            total = total * 60 + int(part)
        return total

    base = seconds(clip_window_start)
    return (seconds(start) - base) * fps, (seconds(end) - base) * fps - 1


def read_groundmore(root: str | Path, meta: str | Path | None = None) -> list[Sample]:
    root = Path(root)
    if meta is None:
        found = [root / n for n in META_NAMES if (root / n).is_file()]
        if not found:
            raise FormatError(f"{root}: no GroundMoRe meta file ({' or '.join(META_NAMES)})")
        meta_path = found[0]
    else:
        meta_path = Path(meta)
    src = str(meta_path)
    videos = require(load_json(meta_path), "videos", src, "", dict)
    samples = []
    for vid, video in videos.items():
        where = f"videos.{vid}"
        img_dir = root / vid / "images"
        frames = sorted(p for p in img_dir.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if img_dir.is_dir() else []
        if not frames:
            raise FormatError(f"{src}: video '{vid}' has no frames in {img_dir}")
        if len(vid) < 9 or not vid[-9:-5].isdigit():
            raise FormatError(f"{src}: video id '{vid}' does not end with the clip window _MMSS_MMSS")
        clip_start = f"{vid[-9:-7]}:{vid[-7:-5]}"
        size = image_size(frames[0])
        for qid, q in require(video, "questions", src, where, dict).items():
            qw = f"{where}.questions.{qid}"
            text = require(q, "question", src, qw, str)
            obj_id = require(q, "obj_id", src, qw, (int, str))
            if isinstance(obj_id, bool) or not str(obj_id).isdigit():
                raise FormatError(f"{src}: field '{qw}.obj_id' must be a label number, got {obj_id!r}")
            obj_id = int(obj_id)
            try:
                start, end = groundmore_action_frames(clip_start, str(require(q, "action_start", src, qw)),
                                                      str(require(q, "action_end", src, qw)))
            except ValueError:
                raise FormatError(f"{src}: field '{qw}.action_start/action_end' must be time strings M:S") from None
            picked = groundmore_window(len(frames), start, end)
            paths = [frames[i] for i, _ in picked]
            masks = [(root / vid / "masks" / (frames[i].stem + ".png")) if inside else None for i, inside in picked]
            masks = [m if m is not None and m.is_file() else None for m in masks]
            samples.append(
                Sample(
                    key=f"{vid}/{qid}",
                    text=text,
                    frames=paths,
                    frame_names=[p.stem for p in paths],
                    size=size,
                    targets=[PngTrack(masks, size, value=obj_id)],
                    answer=q.get("answer"),
                    meta={"video": vid, "exp_id": str(qid), "q_type": q.get("q_type"), "obj_id": obj_id,
                          "action_window": (start, end), "frame_indices": [i for i, _ in picked]},
                )
            )
    return samples
