"""`check_checkpoint`: validate a checkpoint folder or weights file the way loading does, without building a model.

A folder: `config.json` must parse and pass its family's config validation (the family is chosen by `model_type`,
as `pixelwise.load` chooses it); then every weights file goes through `core.checkpoint.load_weights` (safetensors
header checks, finite float tensors; pickle refused unless `allow_pickle`). This is what `pixelwise robustness
check-checkpoint` runs on a checkpoint you downloaded or trained.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pixelwise.core.checkpoint import PICKLE_SUFFIXES, load_weights
from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.io import read_json

# model_type -> the family's config class ("module:Class"), imported on first use like the pipelines
CONFIGS = {
    "pixel_qwen2_5_vl": "pixelwise.models.unipixel.configuration_unipixel:UniPixelConfig",
    "pixelwise_pixellm": "pixelwise.models.pixellm.configuration_pixellm:PixelLMConfig",
    "pixelwise_ufo": "pixelwise.models.ufo.configuration_ufo:UFOConfig",
    "pixelwise_pixelsail": "pixelwise.models.pixelsail.configuration_pixelsail:PixelSailConfig",
    "pixelwise_vitron": "pixelwise.models.vitron.configuration_vitron:VitronConfig",
}


def read_config(folder: Path, error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """A checkpoint folder's config.json as a dict (`error` for a malformed one; CheckpointError when absent)."""
    file = Path(folder) / "config.json"
    if not file.exists():
        raise CheckpointError(f"{folder}: no config.json (not a checkpoint folder)")
    config = read_json(file, error)
    if not isinstance(config, dict):
        raise error(f"{file}: must be a JSON object, got {type(config).__name__}")
    return config


def check_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Summary of a valid checkpoint (model_type, files, tensors, bytes); a typed error naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder or file")
    files = [path]
    info: dict[str, Any] = {"path": str(path)}
    if path.is_dir():
        cfg_file = path / "config.json"
        cfg = read_config(path, ConfigError)
        model_type = cfg.get("model_type")
        info["model_type"] = model_type
        if model_type is None:
            raise ConfigError(f"{cfg_file}: has no model_type")
        if model_type in CONFIGS:
            module, _, name = CONFIGS[model_type].partition(":")
            getattr(importlib.import_module(module), name).from_dict(cfg, source=str(cfg_file))
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
