"""Peak-memory probes: resident set size sampled while a block runs, and CUDA's max allocated.

`python -m pixelwise.bench.memory ...` runs one long-clip query in a fresh process (so the peaks belong to that
query alone) and prints one JSON line; `pixelwise.bench.suite` starts it once per (mode, clip length).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pixelwise
from pixelwise.bench.scripted import objects_answer, teacher_forced


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; falls back to the lifetime peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class MemoryPeak:
    before: int = 0  # RSS when the block started (bytes)
    peak: int = 0  # highest RSS sampled while it ran
    cuda_max_allocated: int | None = None  # torch.cuda.max_memory_allocated during the block, on GPU

    @property
    def growth(self) -> int:
        return self.peak - self.before


@contextmanager
def track_peak(interval_s: float = 0.002) -> Iterator[MemoryPeak]:
    """Sample RSS every `interval_s` in a thread while the block runs; CUDA max allocated is reset and read."""
    import torch

    result = MemoryPeak(before=rss_bytes())
    result.peak = result.before
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            result.peak = max(result.peak, rss_bytes())
            stop.wait(interval_s)

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.peak = max(result.peak, rss_bytes())
        if cuda:
            result.cuda_max_allocated = int(torch.cuda.max_memory_allocated())


def run_long_query(model: str, media: str, objects: int, reference: bool, threads: int | None,
                   out_dir: str | None) -> dict:
    """One `segment(propagate="all")` query with a teacher-forced answer of `objects` objects; saves like the CLI."""
    import torch


    if threads:
        torch.set_num_threads(threads)
    pipe = pixelwise.load(model)
    pipe.reference = reference
    sam2 = pipe.model.require_sam2()
    sam2.encoded_frame_count = 0
    with teacher_forced(pipe, objects_answer(objects)):
        with track_peak() as mem:
            t0 = time.perf_counter()
            result = pipe.segment(media, "the objects", propagate="all")
            t1 = time.perf_counter()
        with track_peak() as save_mem:  # the CLI's part: JSON, one PNG per object and frame, overlay preview
            if out_dir:
                result.save(out_dir)
            t2 = time.perf_counter()
    frames = result.num_frames
    return {
        "frames": frames, "objects": len(result.objects), "reference": reference,
        "query_s": t1 - t0, "save_s": t2 - t1, "segment_s": result.timings.get("segment"),
        "propagation_ms_per_frame": 1000 * result.timings.get("segment", 0.0) / frames,
        "sam2_frames_encoded": sam2.encoded_frame_count,
        "rss_before_mb": mem.before / 2**20, "query_peak_rss_mb": mem.peak / 2**20,
        "query_rss_growth_mb": mem.growth / 2**20, "save_peak_rss_mb": save_mem.peak / 2**20,
        "peak_rss_mb": max(mem.peak, save_mem.peak) / 2**20, "rss_growth_mb": (max(mem.peak, save_mem.peak) - mem.before) / 2**20,
        "lifetime_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_max_allocated_mb": None if mem.cuda_max_allocated is None else mem.cuda_max_allocated / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--media", required=True)
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also save the result there (JSON, mask PNGs, overlay), as the CLI")
    a = ap.parse_args(argv)
    report = run_long_query(a.model, a.media, a.objects, a.reference, a.threads, a.out)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MemoryPeak", "rss_bytes", "run_long_query", "track_peak"]
