"""Fault injection: SIGKILL a training run or an evaluation run at random points, resume, compare with a clean run.

Workers (run as `python -m tools.robustness.faults train|eval ...`):
* `train RUN_DIR STEPS`: a small dropout MLP trained with the `pixelwise.train` pieces (resumable sampler, AdamW, cosine
  schedule, `save_checkpoint` every step); resumes from `latest_checkpoint` when there is one. The per-step losses live
  in the checkpoint's metrics, so they survive exactly as far as the checkpoint does.
* `eval DATA PRED LOG`: `pixelwise.eval.runner.run` over a MeViS-layout folder with an oracle predictor that takes
  `delay` seconds per sample and appends the sample key to LOG when it starts one (to count re-done samples).

Drivers (`train_kill_resume`, `eval_kill_resume`) kill the worker with SIGKILL at random moments, restart it until it
finishes, and return what a test or the report needs to compare with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------------------ workers


def train_worker(run_dir: Path, steps: int, step_delay: float = 0.0) -> None:
    """A toy run checkpointing after every step; `step_delay` seconds per step leave room for a kill to land."""
    import torch

    from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
    from pixelwise.train.sampler import ResumableSampler
    from pixelwise.train.state import clean_leftovers, latest_checkpoint, load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(96, 8, generator=gen)
    y = (x[:, :4].sum(1, keepdim=True)).sin()
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 1))
    opt = build_optimizer(model, OptimConfig(lr=0.02, weight_decay=0.01, groups=[]))
    sched = cosine_with_warmup(opt, steps, warmup_steps=3)
    sampler = ResumableSampler(len(x), seed=5)
    torch.manual_seed(123)  # dropout stream; restored from the checkpoint on resume
    start, losses = 0, {}
    clean_leftovers(run_dir)  # as `pixelwise train --resume` does: a kill during a prune leaves a `.trash_*` folder
    ck = latest_checkpoint(run_dir)
    if ck is not None:
        st = load_checkpoint(ck, model, opt, sched)
        sampler.load_state_dict(st.sampler)
        start, losses = st.step, dict(st.metrics)
    it = iter(sampler)
    for step in range(start, steps):
        idx = [next(it) for _ in range(8)]
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses[f"loss/{step:05d}"] = loss.item()
        save_checkpoint(run_dir, step + 1, model, opt, sched, sampler.state_dict(), metrics=losses, keep=2)
        time.sleep(step_delay)


class SlowOracle:
    """The ground truth with every third frame's masks dropped, `delay` seconds per sample, logging each start."""

    def __init__(self, log: Path, delay: float):
        self.log, self.delay = log, delay

    def predict(self, sample):
        from pixelwise.eval.predictor import OraclePredictor

        with open(self.log, "a") as f:
            f.write(sample.key + "\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(self.delay)
        result = OraclePredictor().predict(sample)
        for o in result.objects:  # a deterministic, per-sample imperfection so the metrics are not all 100
            o.masks[(len(sample.key) + sum(map(ord, sample.key))) % 3 :: 3] = False
        return result


def eval_worker(data: Path, pred: Path, log: Path, delay: float, out: Path) -> None:
    from pixelwise.eval import runner

    report = runner.run("mevis", data, SlowOracle(log, delay), pred, workers=1)
    runner.write_report(report, out)


# ------------------------------------------------------------------------------------------------ drivers


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _worker(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.robustness.faults", *args]


def _run_with_kills(cmd: list[str], kills: int, progressed, rng: random.Random, timeout: float) -> dict[str, int]:
    """Start `cmd`; after `progressed()` changes, wait a random moment and SIGKILL it; `kills` times; then finish."""
    killed = attempts = 0
    deadline = time.monotonic() + timeout
    while True:
        attempts += 1
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if killed < kills:
            before = progressed()
            while proc.poll() is None and progressed() == before and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:
                time.sleep(rng.uniform(0.0, 0.25))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed += 1
                    continue
        try:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError(f"{' '.join(cmd)}: did not finish in {timeout:g}s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit code {proc.returncode}: {err.decode()[-2000:]}")
        return {"kills": killed, "attempts": attempts}


def _train_result(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from pixelwise.train.state import latest_checkpoint

    ck = latest_checkpoint(run_dir)
    meta = json.loads((ck / "trainer_state.json").read_text())
    weights = load_file(str(ck / "model.safetensors"))
    return {"step": meta["step"], "losses": meta["metrics"],
            "weights": {k: v for k, v in sorted(weights.items())}, "checkpoint": ck,
            "all_loadable": all(_loadable(p) for p in (run_dir / "checkpoints").glob("step_*")),
            "leftovers": sorted(p.name for p in (run_dir / "checkpoints").glob(".*"))}


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _loadable(ck: Path) -> bool:
    from pixelwise.core.checkpoint import read_safetensors_header
    from pixelwise.core.errors import CheckpointError

    try:
        json.loads((ck / "trainer_state.json").read_text())
        read_safetensors_header(ck / "model.safetensors")
        read_safetensors_header(ck / "optimizer.safetensors")
    except (OSError, ValueError, CheckpointError):
        return False
    return True


def train_kill_resume(work: Path, steps: int = 40, kills: int = 5, seed: int = 0, timeout: float = 300,
                      step_delay: float = 0.05) -> dict[str, Any]:
    """A clean run and a run SIGKILLed `kills` times then resumed; returns both results for comparison.

    Each kill lands at most ~0.25 s after a new checkpoint; with `step_delay` per step that is a bounded number of
    steps, so on a fast, quiet machine the run cannot finish before all kills have landed (choose steps > kills x
    (1 + 0.25 / step_delay))."""
    clean, killed = work / "clean", work / "killed"
    clean.mkdir(parents=True, exist_ok=True)
    killed.mkdir(parents=True, exist_ok=True)
    _run_with_kills(_worker("train", str(clean), str(steps), "0"), 0, lambda: None, random.Random(seed), timeout)
    pointer = killed / "checkpoints" / "latest"
    stats = _run_with_kills(_worker("train", str(killed), str(steps), str(step_delay)), kills,
                            lambda: pointer.read_text() if pointer.exists() else "", random.Random(seed), timeout)
    return {"clean": _train_result(clean), "killed": _train_result(killed), **stats}


def make_eval_dataset(root: Path, num: int = 10) -> Path:
    """A MeViS-layout folder written by the PixelWorld exporter (small video clips)."""
    from pixelwise.data.pixelworld.export import export
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    native = root / "native"
    generate(native, GenConfig(split="val", num=num, seed=0, video=True, resolution=48, num_frames=6), workers=1)
    return export(native, "mevis", root / "mevis")


def eval_kill_resume(work: Path, kills: int = 3, delay: float = 0.15, seed: int = 0, timeout: float = 300,
                     num: int = 12) -> dict[str, Any]:
    """Clean evaluation vs one SIGKILLed `kills` times and resumed: metrics, and how often each sample was started."""
    data = make_eval_dataset(work / "data", num)
    results = {}
    for name, n_kills in (("clean", 0), ("killed", kills)):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        log, pred, out = d / "started.log", d / "pred", d / "report.json"
        stats = _run_with_kills(_worker("eval", str(data), str(pred), str(log), str(delay), str(out)), n_kills,
                                lambda log=log: log.read_text().count("\n") if log.exists() else 0,
                                random.Random(seed), timeout)
        report = json.loads(out.read_text())
        starts = log.read_text().split()
        results[name] = {"report": report, "starts": starts, **stats}
    return results


def main(argv: list[str]) -> None:
    if argv[0] == "train":
        train_worker(Path(argv[1]), int(argv[2]), float(argv[3]) if len(argv) > 3 else 0.0)
    elif argv[0] == "eval":
        eval_worker(Path(argv[1]), Path(argv[2]), Path(argv[3]), float(argv[4]), Path(argv[5]))
    else:
        raise SystemExit(f"unknown worker {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
