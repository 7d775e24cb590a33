"""Generation speed benchmark: `python -m pixelwise.data.pixelworld.benchmark [--workers N]`.

Measures end-to-end throughput of `generate` (scene sampling, rendering, task generation, RLE encoding, PNG/MP4
writing, JSONL) for images and for 32-frame 128 px clips, in a temporary folder. Not a test: timings depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from pixelwise.data.pixelworld.generate import GenConfig, generate


def measure(cfg: GenConfig, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(tmp, cfg, workers=workers)
        return cfg.num / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    img = measure(GenConfig(split="train", num=args.images, seed=0), args.workers)
    print(f"images (128 px, all image tasks): {img:.0f} samples/s with {args.workers} worker(s)")
    vid = measure(GenConfig(split="train", num=args.clips, seed=0, video=True, num_frames=args.frames), args.workers)
    print(f"clips ({args.frames} frames, 128 px, MP4, all video tasks): {vid:.1f} samples/s "
          f"with {args.workers} worker(s)")
    png = measure(GenConfig(split="train", num=args.clips, seed=0, video=True, num_frames=args.frames,
                            video_format="png"), args.workers)
    print(f"clips ({args.frames} frames, 128 px, PNG frames): {png:.1f} samples/s with {args.workers} worker(s)")


if __name__ == "__main__":
    main()
