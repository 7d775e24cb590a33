"""What each corpus case is fed to: a library call (in this process) and a CLI command (in a subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixelwise.core.errors import CheckpointError, ConfigError


def check_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Validate a checkpoint folder or weights file the way loading does, without building a model.

    A folder: `config.json` must parse and, for a known family, pass its config validation; then every weights file
    goes through `core.checkpoint.load_weights` (safetensors header checks; pickle refused unless `allow_pickle`).
    Returns a summary (tensor count, bytes).
    """
    from pixelwise.core.checkpoint import PICKLE_SUFFIXES, load_weights

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder or file")
    files = [path]
    info: dict[str, Any] = {"path": str(path)}
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise CheckpointError(f"{path}: no config.json")
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{cfg_file}: not valid JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{cfg_file}: expected a JSON object")
        info["model_type"] = cfg.get("model_type")
        from pixelwise.models.unipixel.configuration_unipixel import MODEL_TYPE, UniPixelConfig

        if cfg.get("model_type") == MODEL_TYPE or "unipixel" in str(cfg_file.parent.name).lower():
            UniPixelConfig.from_dict(cfg, source=str(cfg_file))
        elif cfg.get("model_type") is None:
            raise ConfigError(f"{cfg_file}: has no model_type")
        files = sorted(p for p in path.iterdir() if p.suffix == ".safetensors" or p.suffix in PICKLE_SUFFIXES)
        if not files:
            raise CheckpointError(f"{path}: no weights file (*.safetensors)")
    tensors, nbytes = 0, 0
    for f in files:
        state = load_weights(f, allow_pickle=allow_pickle)
        tensors += len(state)
        nbytes += sum(t.numel() * t.element_size() for t in state.values())
    info.update(files=len(files), tensors=tensors, bytes=nbytes)
    return info


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
