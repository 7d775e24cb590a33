"""`pixelwise bench`: latency, per-stage time, multi-object and clip-length scaling, throughput.

Every case is timed `repeats` times after one warm-up and reported as median, min, max and interquartile range.
Optimised and reference modes (`UniPixelPipeline.reference`: frames re-encoded per `<|seg|>`, objects tracked one
by one, all frames' inputs and features kept) run interleaved in the same process, so their ratio is measured side
by side under the same machine load. Clip-length cases run each query in a fresh process (`pixelwise.bench.memory`)
so the memory peaks are that query's own.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import pixelwise
from pixelwise.bench.scripted import objects_answer, teacher_forced
from pixelwise.bench.shapes import random_pipeline
from pixelwise.data.pixelworld.generate import GenConfig, generate
from pixelwise.models.unipixel.processing_unipixel import video_message
from pixelwise.pipeline import DEFAULT_MODEL, Query
from pixelwise.recipes import train_unipixel as recipe
from pixelwise.train.optim import OptimConfig, build_optimizer
from pixelwise.train.unipixel_data import UniPixelTrainDataset
from pixelwise.train.unipixel_loss import LossConfig, UniPixelTrainModule

CASES = ("image", "video", "stages", "objects", "length", "throughput", "train")
DEFAULT_CASES = ("image", "video", "stages", "objects", "length", "throughput", "train")


# ---------------------------------------------------------------------------------------------------- statistics

def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """median / min / max / IQR of timing samples (seconds)."""
    xs = sorted(float(s) for s in samples)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "iqr": q[2] - q[0], "n": len(xs),
            "samples": xs}


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


def side_by_side(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time several variants interleaved (A B A B ...), so slow drifts in machine load hit them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: summarize(v) for k, v in samples.items()}


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------------------------------- media

def synthetic_frames(n: int, height: int = 192, width: int = 256, seed: int = 0) -> np.ndarray:
    """Moving coloured squares on a textured background, uint8 [n, H, W, 3]."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(base[None], n, axis=0)
    colours = [(220, 40, 40), (40, 200, 60), (50, 80, 230)]
    for t in range(n):
        for k, c in enumerate(colours):
            s = height // 5
            x = int((width - s) * (0.5 + 0.45 * np.sin(2 * np.pi * (t / 120 + k / 3))))
            y = int((height - s) * (k + 1) / 4)
            frames[t, y: y + s, x: x + s] = c
    return frames


def write_clip(path: Path, n: int, height: int = 192, width: int = 256) -> Path:
    """An MP4 of n synthetic frames, written in slices (the writer never holds more than 100 frames)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for start in range(0, n, 100):
            frames = synthetic_frames(n, height, width)[start: start + 100]  # cheap: regenerated per slice
            for f in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


# ---------------------------------------------------------------------------------------------------- models

def load_model(model: str | None, shapes: str | None, device: str = "auto", dtype: str | None = None) -> Any:
    """The pipeline to measure: a checkpoint (default: the shipped default model), or random weights of `shapes`."""

    if shapes is None:
        return pixelwise.load(model, device=device, dtype=dtype)

    return random_pipeline(shapes, tokenizer_from=model, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------- cases

@dataclass
class BenchConfig:
    model: str | None = None
    shapes: str | None = None
    device: str = "auto"
    dtype: str | None = None
    repeats: int = 5
    reference: bool = True  # also run the reference mode side by side
    max_new_tokens: int = 512
    num_frames: int = 16  # frames the LLM reads
    objects: tuple[int, ...] = (1, 3, 8)
    lengths: tuple[int, ...] = (16, 100, 1000)
    length_objects: int = 1
    throughput_queries: int = 8
    batch_sizes: tuple[int, ...] = (1, 4, 8)  # `run_batch` sizes of the throughput case
    train_steps: int = 10  # timed optimizer steps per repeat of the `train` case
    threads: int | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "pixelwise-bench")


def case_image(pipe: Any, cfg: BenchConfig) -> dict[str, Any]:
    """Image query end to end (text -> mask), the model's own answer."""
    image = synthetic_frames(1)[0]
    last: dict[str, Any] = {}

    def run() -> None:
        r = pipe.segment(image, "the red square", max_new_tokens=cfg.max_new_tokens)
        last.update(tokens=r.extras.get("generated_tokens"), objects=len(r.objects), timings=r.timings)

    stats = timed(run, cfg.repeats)
    return {"latency_s": stats, "generated_tokens": last["tokens"], "objects": last["objects"],
            "last_timings": last["timings"]}


def case_video(pipe: Any, cfg: BenchConfig) -> dict[str, Any]:
    """Video query end to end: the LLM reads `num_frames` frames, SAM2 segments the same frames."""
    clip = synthetic_frames(cfg.num_frames)
    last: dict[str, Any] = {}

    def run() -> None:
        r = pipe.segment(clip, "the red square", num_frames=cfg.num_frames, max_new_tokens=cfg.max_new_tokens)
        last.update(tokens=r.extras.get("generated_tokens"), objects=len(r.objects), timings=r.timings)

    stats = timed(run, cfg.repeats)
    return {"latency_s": stats, "llm_frames": cfg.num_frames, "sam2_frames": cfg.num_frames,
            "generated_tokens": last["tokens"], "objects": last["objects"], "last_timings": last["timings"]}


def case_stages(pipe: Any, cfg: BenchConfig) -> dict[str, Any]:
    """Per-stage time on a `num_frames` clip: vision tower, LLM prefill, decoding, SAM2 encoder, propagation."""
    import torch


    model, proc = pipe.model, pipe.processor
    clip = synthetic_frames(cfg.num_frames)
    inputs = proc(clip, [video_message("Please segment the red square in this video.", cfg.num_frames)])
    sam2 = model.require_sam2()
    with torch.no_grad():
        vision = model(inputs).vision
        cached = replace(inputs, vision=vision)
        prefill_with_vision = timed(lambda: model(inputs), cfg.repeats)
        prefill_llm = timed(lambda: model(cached), cfg.repeats)
        steps = 32
        gen = timed(lambda: model.generate(cached, max_new_tokens=steps, stop_token_ids=[]), cfg.repeats)
        x = proc.sam2_frames(clip).to(model.device, model.dtype)
        encode = timed(lambda: sam2.encode_frames(x), cfg.repeats)
        feats = sam2.encode_frames(x)
        states = model(cached).prenorm_hidden[-1:]
        prompts = model.seg_prompt_tokens(states)
        track = timed(lambda: sam2.track(feats, prompts, frame_size=clip.shape[1:3]), cfg.repeats)
    n = cfg.num_frames
    vision_s = max(prefill_with_vision["median"] - prefill_llm["median"], 0.0)
    decode_s = max(gen["median"] - prefill_llm["median"], 1e-9)
    return {
        "frames": n, "prompt_tokens": int(inputs.input_ids.numel()),
        "vision_encoder_s": vision_s, "llm_prefill_s": prefill_llm, "prefill_with_vision_s": prefill_with_vision,
        "decode_tokens_per_s": steps / decode_s, "decode_steps": steps, "generate_s": gen,
        "sam2_encode_s": encode, "sam2_encode_ms_per_frame": 1000 * encode["median"] / n,
        "propagation_s": track, "propagation_ms_per_frame": 1000 * track["median"] / n,
    }


def case_objects(pipe: Any, cfg: BenchConfig) -> dict[str, Any]:
    """1, 3, 8 objects in one query on a `num_frames` clip (answer teacher-forced), optimised vs reference."""

    clip = synthetic_frames(cfg.num_frames)
    sam2 = pipe.model.require_sam2()
    rows = []
    for n in cfg.objects:
        results: dict[str, Any] = {}

        def query(reference: bool, results: dict[Any, Any] = results) -> Callable[[], None]:
            def run() -> None:
                pipe.reference = reference
                sam2.encoded_frame_count = 0
                results[reference] = pipe.segment(clip, "the squares", num_frames=cfg.num_frames)
                results[(reference, "encoded")] = sam2.encoded_frame_count
            return run

        variants = {"optimised": query(False)}
        if cfg.reference:
            variants["reference"] = query(True)
        with teacher_forced(pipe, objects_answer(n)):
            stats = side_by_side(variants, cfg.repeats)
        pipe.reference = False
        row: dict[str, Any] = {"objects": n, "frames": cfg.num_frames, "optimised_s": stats["optimised"],
                               "optimised_sam2_frames_encoded": results[(False, "encoded")]}
        if cfg.reference:
            same = all(np.array_equal(np.asarray(a.masks), np.asarray(b.masks))
                       for a, b in zip(results[False].objects, results[True].objects))
            row.update(reference_s=stats["reference"], reference_sam2_frames_encoded=results[(True, "encoded")],
                       speedup=stats["reference"]["median"] / stats["optimised"]["median"], same_masks=same)
        rows.append(row)
    return {"rows": rows}


def case_length(cfg: BenchConfig) -> dict[str, Any]:
    """Propagation over 16 .. 1,000 frames (`propagate="all"`): peak memory and time per frame, one process each."""
    if cfg.shapes is not None:
        return {"skipped": "clip-length scaling runs on checkpoints (--model), not on --shapes"}
    model = cfg.model or _default_model_path()
    rows = []
    for n in cfg.lengths:
        clip = write_clip(cfg.workdir / f"clip{n}.mp4", n)
        for reference in ((False, True) if cfg.reference else (False,)):
            cmd = [sys.executable, "-m", "pixelwise.bench.memory", "--model", str(model), "--media", str(clip),
                   "--objects", str(cfg.length_objects), "--out", str(cfg.workdir / f"out{n}{'-ref' if reference else ''}")]
            if reference:
                cmd.append("--reference")
            if cfg.threads:
                cmd += ["--threads", str(cfg.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"rows": rows}
    for mode in (False, True):
        by_n = {r["frames"]: r for r in rows if r["reference"] == mode}
        if 100 in by_n and 1000 in by_n:
            key = "reference" if mode else "optimised"
            out[f"{key}_peak_rss_ratio_1000_vs_100"] = by_n[1000]["peak_rss_mb"] / by_n[100]["peak_rss_mb"]
            out[f"{key}_rss_growth_mb_100_1000"] = [by_n[100]["rss_growth_mb"], by_n[1000]["rss_growth_mb"]]
            out[f"{key}_query_peak_rss_ratio_1000_vs_100"] = (by_n[1000]["query_peak_rss_mb"]
                                                              / by_n[100]["query_peak_rss_mb"])
    return out


THROUGHPUT_TEXTS = ("the red square", "the blue circle", "the largest object")


def case_throughput(pipe: Any, cfg: BenchConfig) -> dict[str, Any]:
    """Offline inference over a folder of images, three expressions each (as RefCOCO): queries per second one query
    at a time (`segment`) and per image (`segment_many`: media encoded once, shared prefill), side by side."""
    folder = cfg.workdir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for k in range(cfg.throughput_queries):
        Image.fromarray(synthetic_frames(1, seed=k)[0]).save(folder / f"{k:03d}.png")
    files = sorted(folder.glob("*.png"))
    answers: dict[str, list[str]] = {}

    def one_by_one() -> None:
        answers["one_by_one"] = [pipe.segment(str(f), t, max_new_tokens=cfg.max_new_tokens).answer
                                 for f in files for t in THROUGHPUT_TEXTS]

    def per_image() -> None:
        answers["per_image"] = [r.answer for f in files
                                for r in pipe.segment_many(str(f), THROUGHPUT_TEXTS, max_new_tokens=cfg.max_new_tokens)]

    queries = [Query(str(f), t, max_new_tokens=cfg.max_new_tokens) for t in THROUGHPUT_TEXTS for f in files]

    def batched(size: int) -> Callable[[], None]:
        def run() -> None:  # different images side by side in each batch (by text, then image)
            results = [r for k in range(0, len(queries), size) for r in pipe.run_batch(queries[k: k + size])]
            by_query = {(q.media, q.text): r.answer for q, r in zip(queries, results)}
            answers[f"batch_{size}"] = [by_query[(str(f), t)] for f in files for t in THROUGHPUT_TEXTS]
        return run

    n = len(files) * len(THROUGHPUT_TEXTS)
    variants = {"one_by_one": one_by_one}
    if hasattr(pipe, "segment_many"):
        variants["per_image"] = per_image
    for size in cfg.batch_sizes:
        variants[f"batch_{size}"] = batched(size)
    stats = side_by_side(variants, max(1, cfg.repeats // 2))
    out: dict[str, Any] = {"images": len(files), "queries": n, "one_by_one_s": stats["one_by_one"],
                           "queries_per_s": n / stats["one_by_one"]["median"]}
    if "per_image" in stats:
        out.update(per_image_s=stats["per_image"], per_image_queries_per_s=n / stats["per_image"]["median"],
                   per_image_speedup=stats["one_by_one"]["median"] / stats["per_image"]["median"],
                   same_answers=answers["one_by_one"] == answers["per_image"])
    out["batched"] = {
        size: {"seconds": stats[f"batch_{size}"], "queries_per_s": n / stats[f"batch_{size}"]["median"],
               "speedup": stats["one_by_one"]["median"] / stats[f"batch_{size}"]["median"],
               "same_answers": answers[f"batch_{size}"] == answers["one_by_one"]}
        for size in cfg.batch_sizes}
    return out


def case_train(cfg: BenchConfig) -> dict[str, Any]:
    """Training samples/s of the default model's recipe (stage 2: its sizes, micro-batch, data mix and losses) on
    generated PixelWorld data: forward + backward + AdamW step, one sequence per sample."""
    import random

    import torch


    data = cfg.workdir / "train-data"
    if not (data / "vid" / "samples.jsonl").is_file():
        generate(data / "img", GenConfig(split="train", num=32, seed=0, tasks=("referring", "region")), workers=1)
        generate(data / "vid", GenConfig(split="train", num=16, seed=0, video=True,
                                         tasks=("referring", "motion_referring", "pixelqa")), workers=1)
    config_file = Path(recipe.__file__).parent / "configs" / "unipixel_tiny.yaml"
    rcfg = recipe.load_config(config_file)
    rcfg["data"]["sources"] = [{"type": "pixelworld", "root": str(data / "img")},
                               {"type": "pixelworld", "root": str(data / "vid")}]
    # stage 2 of the default model starts from stage 1's folder; here: the same sizes, from scratch

    rcfg["model"] = {**rcfg["model"], "init": "scratch",
                     "sizes": json.loads((DEFAULT_MODEL / "config.json").read_text())["pixelwise_tiny_sizes"]}
    run_dir = cfg.workdir / "train-run"
    model, processor, _ = recipe.build_model(rcfg, run_dir, recipe.D.DistInfo())
    model.train()
    module = UniPixelTrainModule(model, LossConfig.from_dict(rcfg["loss"]))
    dataset = UniPixelTrainDataset(recipe.build_sources(rcfg), processor, seed=0,
                                   video_frames=tuple(rcfg["data"]["video_frames"]),
                                   sample_objects=int(rcfg["data"]["sample_objects"]),
                                   sam2_max_frames=rcfg["data"].get("sam2_max_frames"))
    opt = build_optimizer(module, OptimConfig.from_dict(rcfg["optim"]))
    mb = int(rcfg["micro_batch"])
    order = list(range(len(dataset)))
    random.Random(0).shuffle(order)
    batches = [[dataset[order[(s * mb + j) % len(order)]] for j in range(mb)] for s in range(cfg.train_steps)]
    batches = [[e for e in b if e is not None] for b in batches]  # built once: the case times the model only

    def run() -> None:
        for examples in batches:
            loss, _, _ = module(examples)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), rcfg["max_grad_norm"])
            opt.step()
            opt.zero_grad(set_to_none=True)

    stats = timed(run, max(1, cfg.repeats // 2))
    n = sum(len(b) for b in batches)
    kinds: dict[str, int] = {}
    for b in batches:
        for e in b:
            kinds[e.data_type] = kinds.get(e.data_type, 0) + 1
    return {"config": str(config_file.relative_to(Path(recipe.__file__).parents[2])),
            "sizes": rcfg["model"]["sizes"], "micro_batch": mb, "steps_per_repeat": cfg.train_steps,
            "samples_per_repeat": n, "sample_kinds": kinds, "run_s": stats, "samples_per_s": n / stats["median"],
            "torch_threads": torch.get_num_threads(),
            "note": "data loading excluded (examples built before timing); the recipe overlaps it in a worker"}


def _default_model_path() -> str:
    return str(DEFAULT_MODEL)


# ---------------------------------------------------------------------------------------------------- driver

def run(cfg: BenchConfig, cases: Sequence[str] = DEFAULT_CASES, log: Callable[[str], None] = print) -> dict[str, Any]:
    import torch

    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "config": {k: str(v) if isinstance(v, Path) else v
                                                              for k, v in cfg.__dict__.items()}, "cases": {}}
    pipe = None
    if any(c not in ("length", "train") for c in cases):
        t0 = time.perf_counter()
        pipe = load_model(cfg.model, cfg.shapes, cfg.device, cfg.dtype)
        report["model"] = {**pipe.info(), "load_s": time.perf_counter() - t0}
    for case in cases:
        log(f"[bench] {case} ...")
        t0 = time.perf_counter()
        if case == "length":
            result = case_length(cfg)
        elif case == "train":
            result = case_train(cfg)
        else:
            result = {"image": case_image, "video": case_video, "stages": case_stages, "objects": case_objects,
                      "throughput": case_throughput}[case](pipe, cfg)
        result["wall_s"] = time.perf_counter() - t0
        report["cases"][case] = result
    report["machine"]["load_average_end"] = list(os.getloadavg())
    return report


__all__ = ["CASES", "BenchConfig", "run", "side_by_side", "summarize", "synthetic_frames", "timed", "write_clip"]
