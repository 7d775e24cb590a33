"""How fast is J&F scoring? `python -m pixelwise.eval.speed [--frames 1000] [--height 480] [--width 854]`.

Builds a synthetic expression (a moving, wobbling ellipse as ground truth and a shifted, noisy copy as the
prediction — realistic boundary lengths, not random noise), then times `jf_video` over all frames in one process.
The figure recorded in docs/benchmarks.md comes from this script.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pixelwise.eval.metrics import jf_video


def synthetic_masks(frames: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    gts = np.empty((frames, height, width), bool)
    preds = np.empty_like(gts)
    for t in range(frames):
        cy = height / 2 + height / 4 * np.sin(t / 40)
        cx = width / 2 + width / 3 * np.cos(t / 55)
        ry, rx = height / 6 * (1 + 0.2 * np.sin(t / 7)), width / 8
        gts[t] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        preds[t] = ((yy - cy - 3) / ry) ** 2 + ((xx - cx + 5) / (rx * 1.05)) ** 2 <= 1
        noise = rng.random((-(-height // 8), -(-width // 8))) < 0.01
        preds[t] ^= np.kron(noise, np.ones((8, 8), bool))[:height, :width]
    return preds, gts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    args = ap.parse_args()

    preds, gts = synthetic_masks(args.frames, args.height, args.width)
    start = time.perf_counter()
    out = jf_video(preds, gts)
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": args.frames, "size": [args.height, args.width], "seconds": round(seconds, 2),
                      "frames_per_second": round(args.frames / seconds, 1), "J": out["J"], "F": out["F"]}))


if __name__ == "__main__":
    main()
