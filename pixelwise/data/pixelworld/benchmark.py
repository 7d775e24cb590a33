"""Generation speed benchmark: `python -m pixelwise.data.pixelworld.benchmark [--workers N]`.

Measures end-to-end throughput of `generate` (scene sampling, rendering, task generation, RLE encoding, PNG/MP4
writing, JSONL) for images and for 32-frame 128 px clips, in a temporary folder. Not a test: timings depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from pixelwise.data.pixelworld.generate import GenConfig, generate


def _cpu() -> float:
    """CPU seconds of this process and its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(cfg: GenConfig, workers: int) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second). The second does not depend on what else runs on
    the machine; times the number of free cores it bounds the wall-clock rate."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), _cpu()
        generate(tmp, cfg, workers=workers)
        return cfg.num / (time.perf_counter() - t0), cfg.num / (_cpu() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    runs = [
        ("images (128 px, all image tasks)", GenConfig(split="train", num=args.images, seed=0)),
        (f"clips ({args.frames} frames, 128 px, MP4)",
         GenConfig(split="train", num=args.clips, seed=0, video=True, num_frames=args.frames)),
        (f"clips ({args.frames} frames, 128 px, PNG frames)",
         GenConfig(split="train", num=args.clips, seed=0, video=True, num_frames=args.frames, video_format="png")),
        ("long clips (320 frames, MP4)", GenConfig(split="long", num=max(2, args.clips // 20), seed=0)),
    ]
    print(f"workers: {args.workers}, cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    for name, cfg in runs:
        wall, cpu = measure(cfg, args.workers)
        print(f"{name}: {wall:.1f} samples/s wall clock, {cpu:.1f} samples per CPU second")


if __name__ == "__main__":
    main()
