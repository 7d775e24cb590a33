"""What each corpus case is fed to: a library call (in this process) and a CLI command (in a subprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixelwise.pipeline.check import check_checkpoint


def read_dataset(benchmark: str, root: Path) -> int:
    """Read a benchmark folder and touch every sample's ground truth and prompts (decoding masks)."""
    from pixelwise.eval.benchmarks import get_benchmark

    samples = get_benchmark(benchmark).read(root)
    for s in samples:
        s.gt_instances()
        if s.ignore is not None:
            s.ignore_mask()
        for p in s.prompts:
            p.validate(*s.size, s.num_frames)
    return len(samples)


def library_call(case) -> Any:
    """The in-process reader for a case (raises what the library raises)."""
    if case.group == "media":
        from pixelwise.core.media import load_media

        return load_media(case.path, num_frames=4).num_frames
    if case.group == "result-json":
        from pixelwise.core.errors import FormatError
        from pixelwise.core.media import open_media
        from pixelwise.core.results import Result

        result = Result.load(case.path)
        src = open_media(case.extra["media"])  # a result is read for its media, as `pixelwise overlay` does
        if max(result.frame_indices) >= src.num_frames or tuple(result.size) != tuple(src.size):
            raise FormatError(f"{case.path}: does not fit {case.extra['media']} (frames or size)")
        return result.num_frames
    if case.group == "dataset-json":
        import tempfile

        from pixelwise.eval import runner
        from pixelwise.eval.predictor import OraclePredictor

        read_dataset(case.extra["benchmark"], case.path)
        with tempfile.TemporaryDirectory(prefix="pw-robust-") as pred:  # what `pixelwise eval --model oracle` does
            return runner.run(case.extra["benchmark"], case.path, OraclePredictor(), pred, workers=1)["samples"]
    if case.group == "checkpoint":
        return check_checkpoint(case.path, allow_pickle=bool(case.extra.get("allow_pickle")))
    raise ValueError(f"unknown case group {case.group}")


def cli_args(case, scratch: Path) -> list[str]:
    """`pixelwise ...` arguments that exercise the case from the command line."""
    if case.group == "media":
        return ["info", str(case.path)]
    if case.group == "result-json":
        return ["overlay", str(case.extra["media"]), str(case.path), "--out", str(scratch / "overlay.gif")]
    if case.group == "dataset-json":
        return ["eval", "-b", case.extra["benchmark"], "--data", str(case.path), "--model", "oracle",
                "--pred", str(scratch / "pred"), "--json", "--workers", "1"]
    if case.group == "checkpoint":
        return ["robustness", "check-checkpoint", str(case.path)] + (
            ["--allow-pickle"] if case.extra.get("allow_pickle") else [])
    raise ValueError(f"unknown case group {case.group}")
