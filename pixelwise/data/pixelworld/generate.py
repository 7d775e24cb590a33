"""Generate a PixelWorld split: scenes -> renders -> task samples -> native files (+ optional public layout).

Each sample index gets its own seed from (seed, split, index) and is produced by a pure function of it, so the
output is byte-identical for any number of worker processes. Workers write their own media files; the parent
writes `samples.jsonl` in index order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pixelwise.core.errors import ConfigError, PixelwiseError
from pixelwise.core.io import atomic_write_text
from pixelwise.core.masks import mask_to_box, rle_encode_many
from pixelwise.data.pixelworld import splits, tasks
from pixelwise.data.pixelworld.grammar import describe_object
from pixelwise.data.pixelworld.native import META_FILE, SAMPLES_FILE
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene, SceneConfig, sample_scene

VERSION = "1.0"
FPS = 8.0
MAX_ATTEMPTS = 60


@dataclass(frozen=True)
class GenConfig:
    split: str = "train"
    num: int = 100
    seed: int = 0
    tasks: tuple[str, ...] | None = None  # None: every task that fits the media kind
    video: bool = False
    resolution: int = 128
    num_frames: int | None = None  # None: 32 (320 for the long split)
    video_format: str = "mp4"  # mp4 | png (a folder of lossless PNG frames)

    def task_list(self) -> tuple[str, ...]:
        video = self.video or self.split == "long"
        allowed = tasks.VIDEO_TASKS if video else tasks.IMAGE_TASKS
        if self.tasks is None:
            return allowed
        bad = [t for t in self.tasks if t not in tasks.ALL_TASKS]
        if bad:
            raise ConfigError(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(tasks.ALL_TASKS)}")
        unfit = [t for t in self.tasks if t not in allowed]
        if unfit:
            kind = "video" if video else "image"
            raise ConfigError(f"task(s) {', '.join(unfit)} do not exist for {kind} samples")
        return tuple(self.tasks)

    def validate(self) -> None:
        splits.check_split(self.split)
        if self.num < 0:
            raise ConfigError("--num must be >= 0")
        if not 32 <= self.resolution <= 1024:
            raise ConfigError("resolution must be between 32 and 1024")
        if self.num_frames is not None and not 2 <= self.num_frames <= 2000:
            raise ConfigError("num_frames must be between 2 and 2000")
        if self.video_format not in ("mp4", "png"):
            raise ConfigError("video_format must be mp4 or png")
        self.task_list()


def make_scene(rng: np.random.Generator, cfg: SceneConfig, split: str) -> tuple[Scene, np.ndarray, np.ndarray,
                                                                             np.ndarray]:
    """Draw scenes until every object is clearly visible (image: >= 50 % of it on the frame; video: >= 50 % on a
    quarter of the frames) and render it."""
    for _ in range(MAX_ATTEMPTS):
        c = replace(cfg, required=splits.holdout_required(split, rng))
        scene = sample_scene(rng, c)
        frames, vis, area = render(scene)
        shown = vis.reshape(vis.shape[0], vis.shape[1], -1).sum(2)
        if scene.num_frames == 1:
            ok = np.all((shown[:, 0] >= 0.5 * area[:, 0]) & (shown[:, 0] >= 15))
        else:
            good = (shown >= 0.5 * area) & (shown >= 12)
            ok = np.all(good.sum(1) >= max(3, scene.num_frames // 4))
        if ok:
            return scene, frames, vis, area
    raise PixelwiseError("could not draw a scene with every object visible; relax the configuration")


def _encode_targets(scene: Scene, vis: np.ndarray, ids: list[int]) -> list[dict[str, Any]]:
    index = {o.id: i for i, o in enumerate(scene.objects)}
    out = []
    for oid in ids:
        m = vis[index[oid]]
        rles = rle_encode_many(m)
        masks, boxes = [], []
        for t in range(len(m)):
            box = mask_to_box(m[t])
            masks.append(rles[t] if box is not None else None)
            boxes.append(list(box) if box is not None else None)
        out.append({"obj_id": oid, "label": describe_object(scene.obj(oid)), "masks": masks, "boxes": boxes})
    return out


def _write_media_bytes(path: Path, data: bytes) -> None:
    """Media files: write to a temp name and rename (never half a file under the final name), but without the
    per-file fsync of `atomic_write` — at hundreds of files per second that fsync was the largest single cost.
    Durability comes from `samples.jsonl`, written (and fsynced) last: it is the commit point of a split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image(path: Path, frame: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PixelwiseError(f"{path}: PNG encoding failed")
    _write_media_bytes(path, buf.tobytes())


def write_media(root: Path, stem: str, frames: np.ndarray, video_format: str) -> str:
    """Write an image (.png), a clip (.mp4) or a folder of PNG frames; return the path relative to root."""
    if len(frames) == 1:
        rel = f"media/{stem}.png"
        write_image(root / rel, frames[0])
        return rel
    if video_format == "png":
        rel = f"media/{stem}"
        for t, f in enumerate(frames):
            write_image(root / rel / f"{t:05d}.png", f)
        return rel
    rel = f"media/{stem}.mp4"
    _write_mp4(root / rel, frames)
    return rel


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    """H.264 MP4 with single-threaded, fixed-option encoding, so the bytes are reproducible."""
    import io
    from fractions import Fraction

    import av

    h, w = frames.shape[1:3]
    f = io.BytesIO()
    with av.open(f, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(int(FPS)))
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        container.metadata["encoder"] = "pixelwise"
        for arr in frames:
            if h % 2 or w % 2:
                arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _write_media_bytes(path, f.getvalue())


def generate_sample(cfg: GenConfig, index: int, root: Path | None) -> dict[str, Any]:
    """Sample `index` of the split (pure function of cfg.seed, cfg.split, index). Writes media under root if given."""
    ss = splits.sample_seed(cfg.seed, cfg.split, index)
    rng = np.random.default_rng(ss)
    task_names = cfg.task_list()
    task = task_names[index % len(task_names)]
    scfg = splits.scene_config(cfg.split, cfg.video, cfg.resolution, cfg.num_frames)
    for _ in range(MAX_ATTEMPTS):
        scene, frames, vis, area = make_scene(rng, scfg, cfg.split)
        ctx = tasks.Ctx(scene, frames, vis, area, rng, cfg.split)
        out = tasks.TASKS[task](ctx)
        if out is not None:
            break
    else:
        raise PixelwiseError(f"sample {index}: no scene supported task {task!r} after {MAX_ATTEMPTS} attempts")
    sid = f"{cfg.split}-{index:06d}"
    targets = _encode_targets(scene, vis, out.targets)
    sample: dict[str, Any] = {
        "id": sid, "index": index, "split": cfg.split, "task": task, "media": None,
        "num_frames": scene.num_frames, "height": scene.height, "width": scene.width,
        "fps": FPS if scene.num_frames > 1 else None,
        "question": out.question, "answer": out.answer, "expression": out.expression, "phrase": out.phrase,
        "type_id": out.type_id,
        "targets": targets, "prompts": out.prompts, "options": out.options, "correct": out.correct,
        "qtype": out.qtype, "target_media": None, "edit": out.edit, "scene": scene.to_json(),
    }
    target_frames = None
    if out.target_scene is not None:
        target_frames, vis2, _ = render(out.target_scene)
        sample["target_scene"] = out.target_scene.to_json()
        sample["target_targets"] = _encode_targets(out.target_scene, vis2, out.target_objects or [])
    if root is not None:
        sample["media"] = write_media(root, sid, frames, cfg.video_format)
        if target_frames is not None:
            sample["target_media"] = write_media(root, sid + "_target", target_frames, cfg.video_format)
    return sample


def _worker(args: tuple[GenConfig, list[int], str]) -> list[str]:
    cfg, indices, root = args
    return [json.dumps(generate_sample(cfg, i, Path(root)), separators=(",", ":")) for i in indices]


def generate(
    out: str | Path,
    cfg: GenConfig,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write cfg.num samples to `out` (native format). Returns the samples.jsonl path."""
    cfg.validate()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
    chunk = 8 if cfg.video else 32
    jobs = [(cfg, list(range(s, min(cfg.num, s + chunk))), str(root)) for s in range(0, cfg.num, chunk)]
    lines: list[str] = []
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            lines += _worker(job)
            if progress:
                progress(len(job[1]))
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for job, res in zip(jobs, ex.map(_worker, jobs)):
                lines += res
                if progress:
                    progress(len(job[1]))
    path = root / SAMPLES_FILE
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    meta = {
        "name": "PixelWorld", "version": VERSION, "split": cfg.split, "num": cfg.num, "seed": cfg.seed,
        "tasks": list(cfg.task_list()), "video": bool(cfg.video or cfg.split == "long"),
        "resolution": cfg.resolution, "video_format": cfg.video_format,
        "holdout_combos": sorted(list(c) for c in splits.HOLDOUT_COMBOS),
        "holdout_relations": sorted(list(c) for c in splits.HOLDOUT_RELATIONS),
    }
    atomic_write_text(root / META_FILE, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return path


def generate_in_memory(cfg: GenConfig, indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Samples without writing media (for tests and quick looks)."""
    cfg.validate()
    return [generate_sample(cfg, i, None) for i in (range(cfg.num) if indices is None else indices)]
