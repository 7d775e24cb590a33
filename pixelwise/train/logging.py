"""What a run leaves behind for people: a run folder (resolved config, git commit), a JSONL of metrics,
TensorBoard scalars/images when tensorboard is installed, and a progress bar with loss, throughput and ETA."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pixelwise.core.io import atomic_write_text


def git_commit(path: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class RunLogger:
    """Main-process logger; on other ranks every method is a no-op."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], total_steps: int, enabled: bool = True,
                 tensorboard: bool = True, progress: bool = True, start_step: int = 0):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.total = total_steps
        self._t0 = time.perf_counter()
        self._tb = None
        self._bar = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resolved = dict(config)
        resolved["_git_commit"] = git_commit(Path(__file__).resolve().parent)
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # tensorboard is in the [train] extra
                self._tb = None
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, info="")
            self._bar.start()

    def log(self, step: int, metrics: dict[str, float], samples_seen: int | None = None) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._t0
        record = {"step": step, "time_s": round(elapsed, 3), **{k: float(v) for k, v in metrics.items()}}
        if samples_seen is not None and elapsed > 0:
            record["samples_per_s"] = samples_seen / elapsed
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "time_s"):
                    self._tb.add_scalar(k, v, step)
        if self._bar is not None:
            info = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "time_s"))
            self._bar.update(self._task, completed=step, info=info)

    def tick(self, step: int, loss: float | None, samples_per_s: float) -> None:
        """Every step: move the progress bar (the step, its loss, the rate; the bar's ETA follows from them)."""
        if self._bar is not None:
            text = (f"loss {loss:.4g}  " if loss is not None else "") + f"{samples_per_s:.1f} samples/s"
            self._bar.update(self._task, completed=step, info=text)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image (e.g. a predicted-mask overlay) into TensorBoard."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._tb is not None:
            self._tb.close()
