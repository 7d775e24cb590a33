"""`pixelwise bench compare`: the five model families side by side on the same PixelWorld data and scorer.

For each split (default: test and holdout) the task rows are generated once (deterministic in `(seed, split, num)`),
exported to the public layouts and scored by the evaluation runner behind `pixelwise eval`, with every family's
committed checkpoint loaded by `pixelwise.load`. A family that cannot take a row's input (e.g. an image-only model
asked a video question with a mask prompt) is shown as "-" with the reason in the JSON, never as a score. Besides the
scores: parameters, training cost (from the checkpoint's `training.json`, written when it was trained) and the
median image-query latency measured here.

    pixelwise bench compare --num 24 --out docs/comparison.md --json docs/reports/compare.json
    pixelwise bench compare --num 24 --family UFO --update ...   # rescore one retrained family, keep the others

`--update` (`merge`) replaces only the named families' columns of the existing JSON report and records the run
that scored them, so retraining one family costs its own rows, not the whole table.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pixelwise
from pixelwise.bench.suite import machine
from pixelwise.core.errors import ConfigError
from pixelwise.core.media import load_media
from pixelwise.data.pixelworld.rows import ROWS, Row, generate_row
from pixelwise.eval import native_benchmark, runner
from pixelwise.eval.benchmarks import get_benchmark
from pixelwise.eval.intervals import bootstrap_interval

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"

FAMILIES: dict[str, str] = {  # family -> committed checkpoint folder (under pixelwise/checkpoints/)
    "UniPixel": "unipixel-tiny",
    "PixelLM": "pixellm-tiny",
    "UFO": "ufo-tiny",
    "Pixel-SAIL": "pixelsail-tiny",
    "VITRON": "vitron-tiny",
}


@dataclass
class CompareConfig:
    splits: tuple[str, ...] = ("test", "holdout")
    num: int = 24  # samples generated per row and split
    seed: int = 0
    families: tuple[str, ...] = tuple(FAMILIES)
    rows: tuple[str, ...] = tuple(r.name for r in ROWS)
    latency_repeats: int = 5
    workdir: Path = Path("runs/compare")
    checkpoints: dict[str, Path] = field(default_factory=lambda: {k: CHECKPOINTS / v for k, v in FAMILIES.items()})


def _score(row: Row, split: str, data: Path, pipe: Any, pred_dir: Path) -> dict[str, Any]:
    """Scores of one family on one row: the runner of `pixelwise eval` (native rows: their own evaluators)."""
    native = native_benchmark(row.bench)
    if native is not None:
        report = native.evaluate(data, native.model_predictor(pipe))  # editing: with the scene (its default)
        m = {k: v for k, v in report["metrics"].items() if not isinstance(v, dict)}
        return {"value": float(m[row.metric]) / 100.0, "metrics": m, "samples": report["samples"],
                "interval": bootstrap_interval(row.metric, report.get("per_sample", []))}

    b = get_benchmark(row.bench.format(split=split))
    samples = b.read(data)
    if pred_dir.exists():  # fresh predictions every run (the runner would otherwise skip existing ones)
        import shutil

        shutil.rmtree(pred_dir)
    runner.predict(b, data, pipe, pred_dir, samples=samples)
    report = runner.score(b, data, pred_dir, samples=samples)
    m = report["metrics"]
    return {"value": float(m[row.metric]) / 100.0, "metrics": m, "samples": report["samples"],
            "interval": bootstrap_interval(row.metric, report.get("per_sample", []))}


def _latency(pipe: Any, image: Any, repeats: int) -> dict[str, float]:
    pipe.segment(image, "the red circle")  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe.segment(image, "the red circle")
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": repeats}


def _training(folder: Path) -> dict[str, Any] | None:
    f = folder / "training.json"
    return json.loads(f.read_text()) if f.is_file() else None


def run(cfg: CompareConfig, log: Callable[[str], None] = print,
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Generate the rows' data, then score every family on every row and split. `progress(stage, done, total)`:
    data sets generated, then (family, split, row) cells scored."""
    import numpy as np
    import torch


    t_start = time.perf_counter()
    rows = [r for r in ROWS if r.name in cfg.rows]
    tick = progress or (lambda stage, done, total: None)
    data: dict[tuple[str, str], Path] = {}
    for split in cfg.splits:
        for r in rows:
            data[(split, r.name)] = generate_row(cfg.workdir / "data" / f"{split}-{r.name}", split, r, cfg.num, cfg.seed)
            tick("data", len(data), len(cfg.splits) * len(rows))
    cells, scored = len(cfg.families) * len(cfg.splits) * len(rows), 0
    probe_root = cfg.workdir / "data" / f"{cfg.splits[0]}-image_referring"
    probe_rel = json.loads((probe_root / "samples.jsonl").read_text().splitlines()[0])["media"]
    probe = np.asarray(load_media(probe_root / probe_rel).frames[0])

    report: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "config": {"splits": list(cfg.splits), "num": cfg.num, "seed": cfg.seed,
                                         "rows": [r.name for r in rows], "torch_threads": torch.get_num_threads()},
                              "families": {}}
    for fam in cfg.families:
        folder = Path(cfg.checkpoints[fam])
        t0 = time.perf_counter()
        pipe = pixelwise.load(folder, device="cpu")
        info = pipe.info()
        entry: dict[str, Any] = {"checkpoint": str(folder), "parameters": info["parameters"],
                                 "training": _training(folder), "latency": _latency(pipe, probe, cfg.latency_repeats),
                                 "scores": {}}
        for split in cfg.splits:
            for r in rows:
                pred_dir = cfg.workdir / "pred" / fam / split / r.name
                try:
                    entry["scores"].setdefault(split, {})[r.name] = _score(r, split, data[(split, r.name)], pipe,
                                                                           pred_dir)
                except Exception as e:  # noqa: BLE001  (a family that cannot take this input: recorded, not scored)
                    entry["scores"].setdefault(split, {})[r.name] = {"value": None,
                                                                     "unsupported": f"{type(e).__name__}: {e}"[:300]}
                v = entry["scores"][split][r.name]["value"]
                scored += 1
                tick("scores", scored, cells)
                log(f"[compare] {fam:10s} {split:8s} {r.name:17s} {'-' if v is None else f'{v:.3f}'}")
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        report["families"][fam] = entry
        del pipe
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    return report


def _rows_of(report: dict[str, Any]) -> list[str]:
    if "rows" in report["config"]:
        return list(report["config"]["rows"])
    scores = next(iter(report["families"].values()), {}).get("scores", {})  # reports written before "rows" was kept
    return sorted({r for split in scores.values() for r in split})


def check_same_data(old: dict[str, Any], splits: list[str], num: int, seed: int, rows: list[str]) -> None:
    """`ConfigError` naming the difference unless a run with these settings scores the data of report `old`
    (checked before an `--update` run scores anything)."""
    try:
        have = (list(old["config"]["splits"]), old["config"]["num"], old["config"]["seed"], sorted(_rows_of(old)))
    except (KeyError, TypeError) as e:
        raise ConfigError(f"--update: the existing report is not a bench compare report (missing {e})") from None
    for key, a, b in zip(("splits", "num", "seed", "rows"), have, (list(splits), num, seed, sorted(rows))):
        if a != b:
            raise ConfigError(f"--update: the existing report was made with {key} = {a}, this run with {b}; "
                              "rerun every family instead (without --update)")


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` (an earlier whole report) with the families of `new` (a run of some families on the same data)
    replaced or added; the run that scored them is listed under "updates". The two must share splits, samples per
    row, seed and rows, or the columns would not be comparable (`ConfigError` names the difference)."""
    check_same_data(old, new["config"]["splits"], new["config"]["num"], new["config"]["seed"], _rows_of(new))
    out = copy.deepcopy(old)
    out["families"].update(new["families"])
    order = list(FAMILIES)  # the columns in the usual order, whatever order they were scored in
    out["families"] = dict(sorted(out["families"].items(),
                                  key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    out.setdefault("updates", []).append({
        "families": list(new["families"]), "command": new.get("command"), "date": new.get("date"),
        "seconds": new["seconds"], "torch_threads": new["config"]["torch_threads"],
        "load_average": [new["machine"]["load_average"][0], new["machine"]["load_average_end"][0]]})
    return out


def _fmt(v: float | None, interval: list[float] | tuple[float, float] | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if not interval else f"{v:.3f} ({interval[0]:.2f}-{interval[1]:.2f})"


def markdown(report: dict[str, Any], command: str) -> str:
    """docs/comparison.md from a report (tables only; the prose around them lives in the template below)."""
    fams = list(report["families"])
    cfg = report["config"]
    m = report["machine"]
    lines = ["# The five families side by side", "",
             "Generated by the command below from the committed checkpoints; do not edit the tables by hand.", "",
             "```bash", command, "```", "",
             (f"Machine: {m['cpu']} x{m['cpu_count']}, torch {m['torch']}, {cfg['torch_threads']} thread(s), "
             f"load average {m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}; whole run "
             f"{report['seconds'] / 60:.1f} min. Data: PixelWorld, {cfg['num']} samples per row and split, seed "
             f"{cfg['seed']} (generated by the command). Scores are fractions (1.0 = perfect); '-' = the family "
             "cannot take that input (the reason is in the JSON report); in brackets the 95 % bootstrap interval over "
             "the samples (2,000 resamples), so two figures whose intervals overlap may differ by noise alone."), ""]
    for u in report.get("updates", []):  # one paragraph each, after the machine's
        lines += [(f"Rescored later on the same data: {', '.join(u['families'])} ({u.get('date') or '?'}, "
                   f"{u['torch_threads']} thread(s), load average {u['load_average'][0]:.1f} -> "
                   f"{u['load_average'][1]:.1f}, {u['seconds'] / 60:.1f} min): `{u.get('command') or '?'}`."), ""]
    for split in cfg["splits"]:
        lines += [f"## {split}", "", "| task | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
        for r in ROWS:
            if not any(r.name in report["families"][f]["scores"].get(split, {}) for f in fams):
                continue
            cells = [report["families"][f]["scores"].get(split, {}).get(r.name, {}) for f in fams]
            lines.append(f"| {r.title} | " + " | ".join(_fmt(c.get("value"), c.get("interval")) for c in cells) + " |")
        lines.append("")
    lines += ["## Cost", "", "| | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    lines.append("| parameters (M) | " + " | ".join(f"{report['families'][f]['parameters'] / 1e6:.2f}" for f in fams)
                 + " |")

    def train_cell(f: str) -> str:
        t = report["families"][f].get("training")
        return "?" if not t else f"{t['wall_minutes']:.0f} min, {t['examples']:,} examples"

    lines.append("| training (CPU) | " + " | ".join(train_cell(f) for f in fams) + " |")
    lines.append("| image query latency (median) | " + " | ".join(
        f"{1000 * report['families'][f]['latency']['median_s']:.0f} ms" for f in fams) + " |")
    lines.append("")
    return "\n".join(lines)


NOTES_MARKER = "<!-- notes: kept when the tables are regenerated -->"


def with_notes(tables: str, existing: Path) -> str:
    """The regenerated tables followed by the hand-written notes of the existing file (after `NOTES_MARKER`)."""
    notes = ""
    if existing.is_file():
        text = existing.read_text()
        if NOTES_MARKER in text:
            notes = text[text.index(NOTES_MARKER):]
    return tables.rstrip("\n") + "\n\n" + (notes or NOTES_MARKER + "\n")


__all__ = ["FAMILIES", "NOTES_MARKER", "ROWS", "CompareConfig", "check_same_data", "markdown", "merge", "run",
           "with_notes"]
