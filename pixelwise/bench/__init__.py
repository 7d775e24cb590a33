"""Benchmarks behind `pixelwise bench` (see docs/benchmarks.md, "Performance")."""

from pixelwise.bench.suite import CASES, BenchConfig, run, side_by_side, summarize, synthetic_frames, timed

__all__ = ["CASES", "BenchConfig", "run", "side_by_side", "summarize", "synthetic_frames", "timed"]
