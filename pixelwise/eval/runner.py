"""Score predictions on a benchmark (`score`), or run a `Predictor` over it first (`run`).

Scoring is per sample and independent, so it fans out over worker processes; the parent only aggregates. Running
a predictor is sequential (one model) and resumable: a sample whose prediction files already exist is skipped, and
every file is written atomically, so an interrupted run leaves only complete predictions behind.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import pixelwise
from pixelwise.core import masks as mask_ops
from pixelwise.core.errors import FormatError, PixelwiseError
from pixelwise.core.io import atomic_write_text
from pixelwise.data.formats import predictions as P
from pixelwise.data.formats.rvos import LAYOUTS, first_existing
from pixelwise.data.formats.sample import Sample, load_json, read_label_png, require
from pixelwise.eval import metrics as M
from pixelwise.eval import protocols
from pixelwise.eval.benchmarks import Benchmark, get_benchmark
from pixelwise.eval.predictor import OraclePredictor, Predictor, union_masks

# --------------------------------------------------------------------------------------------------- per sample


def _score_video(sample: Sample, pred: str, rles: list | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": sample.key, "type_id": sample.meta.get("type_id"),
                           "q_type": sample.meta.get("q_type")}
    if rles is not None:  # Ref-SAV prediction JSON
        masks = np.stack([mask_ops.rle_decode(r, sample.size, f"{pred}: {sample.key}[{t}]") if r else
                          np.zeros(sample.size, bool) for t, r in enumerate(rles)]) if rles else None
        if masks is not None and len(masks) != sample.num_frames:
            raise FormatError(f"{pred}: '{sample.key}.prediction_masks' has {len(masks)} masks for "
                              f"{sample.num_frames} frames")
    else:
        masks = P.read_video_masks(pred, sample.meta["video"], sample.meta["exp_id"], sample.frame_names, sample.size)
    if masks is None:  # no prediction for the video: the official scripts score it 0
        rec.update(J=0.0, F=0.0, A=0.0, R=0.0, missing=True)
        return rec
    gt = sample.gt_union()
    jf = M.jf_video(masks, gt)
    rec.update(J=jf["J"], F=jf["F"], A=M.accuracy(masks, gt))
    fg = sample.meta.get("foreground")
    if fg is not None:
        rec["R"] = M.robustness(masks, gt, fg.load())
    return rec


def _load_result(sample: Sample, pred: str):
    return P.read_result(pred, sample.key)


def _image_prediction(sample: Sample, pred: str) -> np.ndarray | None:
    """bool [1, H, W] from `<key>.json` (pixelwise result) or, failing that, a mask PNG `<key>.png`."""
    result = _load_result(sample, pred)
    if result is not None:
        return union_masks(result, 1, sample.size, sample.key)
    png = Path(pred) / f"{sample.key}.png"
    if not png.is_file():
        return None
    m = read_label_png(png) > 0
    if m.shape != tuple(sample.size):
        raise FormatError(f"{png}: prediction is {m.shape[1]}x{m.shape[0]}, the image {sample.size[1]}x{sample.size[0]}")
    return m[None]


def _score_image(sample: Sample, pred: str, _: Any) -> dict[str, Any]:
    gt = sample.gt_union()
    predicted = _image_prediction(sample, pred)
    masks = np.zeros_like(gt) if predicted is None else predicted  # no prediction = nothing segmented
    i, u = M.intersection_union(masks, gt, sample.ignore_mask())
    return {"key": sample.key, "I": i, "U": u, "IoU": 1.0 if u == 0 else i / u, "missing": predicted is None}


def _score_multi(sample: Sample, pred: str, _: Any) -> dict[str, Any]:
    result = _load_result(sample, pred)
    gts = sample.gt_instances()[:, 0]
    preds = (np.stack([o.masks[0] for o in result.objects]) if result is not None and result.objects
             else np.zeros((0, *sample.size), bool))
    if preds.shape[1:] != gts.shape[1:]:
        raise FormatError(f"{sample.key}: predicted masks are {preds.shape[1:]}, the image {gts.shape[1:]}")
    scores = M.muse_ciou_giou([[(preds, gts)]])
    return {"key": sample.key, "image": sample.meta["image"], "I": scores["intersection"], "U": scores["union"],
            "iou_sum": scores["iou_sum"], "n_pred": len(preds), "n_gt": len(gts), "missing": result is None,
            "n_pred_nonempty": int(preds.any(axis=(1, 2)).sum())}


def _score_qa(sample: Sample, pred: str, pixelqa: bool) -> dict[str, Any]:
    result = _load_result(sample, pred)
    text = "" if result is None else result.answer
    gt_letter = M.videorefer_answer_letter(sample.answer or "")
    if pixelqa:
        letters = [chr(ord("a") + k) for k in range(len(sample.options))]
        correct = M.parse_pixelqa_choice(text, letters) == gt_letter.lower()
    else:
        correct = M.parse_videorefer_choice(text).lower() == gt_letter.lower()
    rec: dict[str, Any] = {"key": sample.key, "q_type": sample.meta.get("q_type"), "pred": text,
                           "correct": bool(correct), "missing": result is None}
    if pixelqa:
        frames = sample.meta["annotated_frames"]
        objs = []
        for k, track in enumerate(sample.targets):
            gt = track.load()[frames]
            pm = np.zeros_like(gt)
            if result is not None and k < len(result.objects):
                full = union_masks(type(result)(answer="", objects=[result.objects[k]],
                                                frame_indices=result.frame_indices, size=result.size),
                                   sample.num_frames, sample.size, sample.key)
                pm = full[frames]
            objs.append(M.pixelqa_volume_jf(pm, gt))
        rec["objects"] = objs
    return rec


def _score_task(args: tuple[str, Sample, str, Any]) -> dict[str, Any]:
    kind, sample, pred, extra = args
    if kind == "video":
        return _score_video(sample, pred, extra)
    if kind == "image":
        return _score_image(sample, pred, extra)
    if kind == "multi":
        return _score_multi(sample, pred, extra)
    return _score_qa(sample, pred, extra)


# --------------------------------------------------------------------------------------------------- scoring


def _progress_map(fn: Callable, tasks: Sequence, workers: int, progress: bool, label: str) -> list:
    """`map(fn, tasks)` over `workers` processes with a progress bar; results in task order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    results: list = []
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=len(tasks))
        if workers <= 1 or len(tasks) < 2:
            for t in tasks:
                results.append(fn(t))
                bar.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for r in pool.map(fn, tasks, chunksize=max(1, len(tasks) // (workers * 8))):
                    results.append(r)
                    bar.advance(task)
    return results


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


def score(
    benchmark: str | Benchmark,
    data: str | Path,
    pred: str | Path,
    workers: int | None = None,
    progress: bool = False,
    samples: list[Sample] | None = None,
) -> dict[str, Any]:
    """Score existing predictions in the benchmark's layout; returns the metrics dict (also what `--out` holds)."""
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    data, pred = Path(data), Path(pred)
    if not pred.exists():
        raise PixelwiseError(f"--pred {pred}: no such file or folder")
    start = time.perf_counter()
    if bench.kind == "davis-unsupervised":
        metrics = score_ref_davis17_referformer(data, pred)
        return _report(bench, metrics, [], time.perf_counter() - start)
    samples = bench.read(data) if samples is None else samples
    if bench.kind == "video" and pred.is_file():  # Ref-SAV / Sa2VA prediction JSON
        table = P.read_refsav_json(pred)
        tasks = [("video", s, str(pred), table.get(s.meta["video"], {}).get(s.meta["exp_id"], [])) for s in samples]
    elif pred.is_file():
        raise PixelwiseError(f"--pred {pred}: {bench.name} predictions are a folder, not a file")
    else:
        extra = bench.canonical == "pixelqa" if bench.kind == "qa" else None
        tasks = [(bench.kind, s, str(pred), extra) for s in samples]
    records = _progress_map(_score_task, tasks, workers or default_workers(), progress, f"scoring {bench.name}")
    metrics = bench.aggregate(records)
    return _report(bench, metrics, records, time.perf_counter() - start)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _report(bench: Benchmark, metrics: dict, records: list[dict], seconds: float) -> dict[str, Any]:
    return _jsonable({
        "benchmark": bench.name,
        "protocol": bench.protocol,
        "metrics": metrics,
        "samples": len(records),
        "missing": sum(1 for r in records if r.get("missing")),
        "seconds": round(seconds, 3),
        "per_sample": [{k: v for k, v in r.items() if k not in ("missing",)} for r in records],
    })


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    return atomic_write_text(out, json.dumps(report, indent=2))


# --------------------------------------------------------------------------------------------------- ReferFormer


def score_ref_davis17_referformer(data: Path, pred: Path, annotators: Iterable[int] = range(4)) -> dict[str, Any]:
    """Ref-DAVIS17 under ReferFormer's protocol: for each annotator set `anno_<k>` under `pred`, the DAVIS
    unsupervised evaluation of its indexed PNGs against `valid/Annotations` (DAVIS `Annotations_unsupervised`),
    then the mean of the per-set global results."""

    layout = LAYOUTS["ref-davis17"]
    meta_path = first_existing(data, layout.meta)
    ann_root = first_existing(data, layout.annotations, "dir")
    if meta_path is None or ann_root is None:
        raise FormatError(f"{data}: needs {layout.meta[0]} and {layout.annotations[0]}/ (DAVIS "
                          "Annotations_unsupervised) for the ReferFormer protocol")
    videos = require(load_json(meta_path), "videos", str(meta_path), "", dict)
    sets = []
    for k in annotators:
        seqs = {}
        for vid, video in videos.items():
            names = [str(f) for f in require(video, "frames", str(meta_path), f"videos.{vid}", list)]
            gt_paths = [ann_root / vid / f"{n}.png" for n in names]
            for p in gt_paths:
                if not p.is_file():
                    raise FormatError(f"{p}: ground-truth annotation for a listed frame is missing")
            gt = np.stack([read_label_png(p) for p in gt_paths])
            pred_paths = [pred / f"anno_{k}" / vid / f"{n}.png" for n in names]
            labels = np.zeros_like(gt)
            for t, p in enumerate(pred_paths):
                if not p.is_file():
                    raise FormatError(f"{p}: prediction for a listed frame is missing")
                labels[t] = read_label_png(p)
            seqs[vid] = (gt, labels)
        sets.append(seqs)
    return protocols.ref_davis17_referformer(sets)


# --------------------------------------------------------------------------------------------------- predicting


def _video_root(bench: Benchmark, pred: Path) -> Path:
    """Ref-YouTube-VOS predictions go under `Annotations/` so the folder can be zipped for the server as it is."""
    return pred / "Annotations" if bench.canonical == "ref-youtube-vos" else pred


def _has_prediction(bench: Benchmark, sample: Sample, pred: Path) -> bool:
    if bench.kind == "video":  # frames are written in order; the last one marks a complete expression
        root = _video_root(bench, pred)
        return P.png_folder_paths(root, sample.meta["video"], sample.meta["exp_id"], sample.frame_names[-1:])[0].is_file()
    return P.result_path(pred, sample.key).is_file() or (bench.kind == "image" and (pred / f"{sample.key}.png").is_file())


def _write_prediction(bench: Benchmark, sample: Sample, result, pred: Path) -> None:
    if bench.kind == "video":
        masks = union_masks(result, sample.num_frames, sample.size, sample.key)
        P.write_video_masks(_video_root(bench, pred), sample.meta["video"], sample.meta["exp_id"], sample.frame_names,
                            masks)
    else:
        P.write_result(pred, sample.key, result)


@dataclass(frozen=True)
class Shard:
    """This process's part of a sharded evaluation: `torchrun --nproc-per-node N -m pixelwise eval ...` starts N
    processes (RANK / WORLD_SIZE / LOCAL_RANK set by torchrun, on one node or many); each predicts every N-th
    sample still missing, and rank 0 scores once all have written. A plain run is a world of one."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str = "auto") -> str:
        """The device this rank's model runs on: its own GPU under torchrun when CUDA is there."""
        import torch

        if self.world_size > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group (after a last barrier: rank 0 has scored)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()


def shard_from_env() -> Shard:
    """The shard torchrun's environment describes; joins its process group (gloo: a barrier needs no GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Shard(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def predict(
    benchmark: str | Benchmark,
    data: str | Path,
    predictor: Predictor,
    pred: str | Path,
    progress: bool = False,
    samples: list[Sample] | None = None,
    shard: Shard | None = None,
    batch_size: int = 1,
) -> dict[str, int]:
    """Run `predictor` over every sample without a prediction yet and write its official-layout files; with a
    `shard`, only every `world_size`-th of them (this rank's), and the layout-wide files after all ranks wrote.
    `batch_size` > 1 hands the predictor that many samples at a time (its `predict_batch`, when it has one)."""
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if bench.kind == "davis-unsupervised":
        raise PixelwiseError("ref-davis17-referformer scores combined per-annotator label maps; predict "
                             "ref-davis17 per expression and combine them with write_davis_labels")
    if not isinstance(predictor, Predictor):
        raise PixelwiseError(f"{type(predictor).__name__} is not a Predictor (needs predict(sample) -> Result)")
    pred = Path(pred)
    samples = bench.read(Path(data)) if samples is None else samples
    shard = shard or Shard()
    # shard by position, then skip what is done: every rank agrees on the split whenever it starts
    todo = [s for s in samples[shard.rank::shard.world_size] if not _has_prediction(bench, s, pred)]
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"predicting {bench.name}", total=len(todo))
        batched = batch_size > 1 and hasattr(predictor, "predict_batch")
        step = batch_size if batched else 1
        for k in range(0, len(todo), step):
            group = todo[k: k + step]
            results = predictor.predict_batch(group) if batched else [predictor.predict(group[0])]
            for s, result in zip(group, results):
                _write_prediction(bench, s, result, pred)
                bar.advance(task)
    shard.barrier()  # every rank's predictions are on disk before anything reads them
    if not shard.is_main:
        return {"predicted": len(todo), "skipped": len(samples[shard.rank::shard.world_size]) - len(todo)}
    if bench.canonical == "ref-youtube-vos":  # ready for the CodaLab server
        P.write_submission_zip(pred, pred / "submission.zip")
    if bench.kind == "qa":  # also VideoRefer's own answer file
        rows = []
        for s in samples:
            r = P.read_result(pred, s.key)
            rows.append({"id": s.key, "video": s.meta.get("video"), "Question": s.text, "Answer": s.answer,
                         "pred": r.answer if r else "", "type": s.meta.get("q_type")})
        P.write_videorefer_answers(pred / "answers.jsonl", rows)
    mine = len(samples[shard.rank::shard.world_size])
    return {"predicted": len(todo), "skipped": mine - len(todo)}


def run(
    benchmark: str,
    data: str | Path,
    predictor: Predictor,
    pred: str | Path,
    workers: int | None = None,
    progress: bool = False,
    limit: int | None = None,
    samples: list[Sample] | None = None,
    shard: Shard | None = None,
    batch_size: int = 1,
) -> dict[str, Any] | None:
    """`predict` then `score`, reading the benchmark once (or taking its `samples`); `limit`: the first N samples
    only. The report says how long each took (`predict_seconds`, `score_seconds`) and how many predictions were
    made or reused."""
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    samples = read_samples(bench, data, limit) if samples is None else samples
    t0 = time.perf_counter()
    if batch_size < 1:
        raise PixelwiseError(f"--batch-size must be >= 1, got {batch_size}")
    counts = predict(bench, data, predictor, pred, progress=progress, samples=samples, shard=shard,
                     batch_size=batch_size)
    t1 = time.perf_counter()
    if shard is not None and not shard.is_main:
        return None  # rank 0 scores
    report = score(bench, data, pred, workers=workers, progress=progress, samples=samples)
    report.update(counts, predict_seconds=round(t1 - t0, 3), score_seconds=report["seconds"],
                  seconds=round(time.perf_counter() - t0, 3))
    return report


def read_samples(bench: Benchmark, data: str | Path, limit: int | None = None) -> list[Sample]:
    """The benchmark's samples in `data` (the first `limit` of them); an empty benchmark is an error that says so."""
    samples = bench.read(Path(data))
    if not samples:
        raise PixelwiseError(f"--data {data}: no {bench.name} samples found in the {bench.canonical} layout there")
    if limit is not None:
        if limit < 1:
            raise PixelwiseError(f"--limit must be >= 1, got {limit}")
        samples = samples[:limit]
    return samples


def load_predictor(path: str, device: Any = "auto", threads: int | None = None) -> Predictor:
    """`--model PATH`: "oracle" gives the ground-truth predictor; anything else goes through `pixelwise.load`."""
    if path == "oracle":
        return OraclePredictor()

    model = pixelwise.load(path, device=device, threads=threads)
    if not isinstance(model, Predictor):
        raise PixelwiseError(f"--model {path}: the loaded {type(model).__name__} has no predict(sample) method")
    return model
