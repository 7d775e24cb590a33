"""Learning curves of recipe runs as one PNG (the model cards' figures), from the runs' `losses.jsonl`.

    python -m pixelwise.train.curves runs/unipixel-tiny-sam2b runs/unipixel-tiny-ground \
        --metrics loss_lm loss_seg loss_box_prompt --out docs/models/images/unipixel-tiny-curves.png

Each metric gets a panel; each run is a line, smoothed with a running mean over `--smooth` steps (the raw per-step
values of a 4-example micro-batch are too noisy to read). Runs that did not log a metric are left out of its panel.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def read_losses(run_dir: str | Path) -> dict[str, np.ndarray]:
    """`{metric: [steps, values]}` from a run folder's losses.jsonl (the last entry wins for a repeated step)."""
    rows: dict[int, dict] = {}
    with open(Path(run_dir) / "losses.jsonl") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[int(r["step"])] = r
    out: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(rows):
        for k, v in rows[step].items():
            if k != "step" and isinstance(v, (int, float)):
                out.setdefault(k, []).append((step, float(v)))
    return {k: np.asarray(v, dtype=np.float64).T for k, v in out.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)  # no lag-free padding tricks: partial means
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot(runs: list[str | Path], metrics: list[str], out: str | Path, window: int = 50,
         labels: list[str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    data = [read_losses(r) for r in runs]
    names = labels or [Path(r).name for r in runs]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for k, (name, d) in enumerate(zip(names, data)):
            if metric in d:  # a run keeps its colour in every panel, also where others have no line
                steps, values = d[metric]
                ax.plot(steps, smooth(values, window), label=name, linewidth=1.2, color=f"C{k % 10}")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for line in ax.get_lines():
            handles.setdefault(line.get_label(), line)
    axes[0][0].legend(list(handles.values()), list(handles), fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)  # atomic: a reader never sees half a PNG
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pixelwise.train.curves", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (each with losses.jsonl)")
    ap.add_argument("--metrics", nargs="+", default=["loss", "loss_lm", "loss_seg"])
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--smooth", type=int, default=50)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    print(plot(args.runs, args.metrics, args.out, args.smooth, args.labels))


if __name__ == "__main__":
    main()
