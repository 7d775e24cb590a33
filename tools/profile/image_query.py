"""Where the default model's image query spends its time, and what reusing a conversation's encodings saves.

    python -m tools.profile.image_query            # A/B (reuse on / off, alternating) + cProfile of segment()

Numbers are in docs/benchmarks.md ("One SAM2 encoding per conversation"). One torch thread.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time

import torch

import pixelwise
from pixelwise.bench.suite import synthetic_frames
from pixelwise.core.prompts import Point
from pixelwise.models.unipixel.pipeline_unipixel import UniPixelChat

PARTS = {"modeling_unipixel.py(generate)", "modeling_unipixel.py(embed)", "modeling_unipixel.py(object_proposals)",
         "model.py(propose)", "object_keys.py(forward)", "modeling_unipixel.py(visual_features)",
         "modeling_unipixel.py(_run_llm)", "model.py(encode_frames)", "pipeline_unipixel.py(_track)"}


def _recompute(self, inputs) -> None:  # the behaviour before: only the vision tower's outputs reused
    inputs.vision = self._vision


def main(repeats: int = 16) -> None:
    torch.set_num_threads(1)
    pipe = pixelwise.load()
    image = synthetic_frames(1)[0]
    queries = {"segment": lambda: pipe.segment(image, "the red square"),
               "point ask": lambda: pipe.ask(image, "What is [0]?", regions=[Point(100, 80)])}
    reuse = UniPixelChat._reuse_encodings
    for name, query in queries.items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        outs = {}
        for i in range(repeats):
            order = (("before", _recompute), ("after", reuse)) if i % 2 else (("after", reuse), ("before", _recompute))
            for key, fn in order:
                UniPixelChat._reuse_encodings = fn
                t = time.perf_counter()
                r = query()
                times[key].append(time.perf_counter() - t)
                outs[key] = (r.answer, [o.masks.tobytes() for o in r.objects])
        UniPixelChat._reuse_encodings = reuse
        b, a = (statistics.median(times[k][2:]) * 1e3 for k in ("before", "after"))
        print(f"{name}: before {b:.1f} ms, after {a:.1f} ms, {b / a:.2f}x, same answer and masks: "
              f"{outs['before'] == outs['after']}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        queries["segment"]()
    prof.disable()
    stats = pstats.Stats(prof)
    print("cumulative ms per segment() query:")
    for (file, line, fn), (_, _, _, cum, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):
        label = f"{file.split('/')[-1]}({fn})"
        if label in PARTS:
            print(f"  {label:45s} {cum * 100:7.1f}")


if __name__ == "__main__":
    main()
