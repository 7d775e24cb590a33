"""`pixelwise.load(path)`: a checkpoint folder -> the pipeline of its model family.

```python
import pixelwise
from pixelwise import Point

pipe = pixelwise.load("checkpoints/UniPixel-3B")           # CUDA + bfloat16 when available, else CPU + float32
result = pipe.segment("clip.mp4", "the boy who is crying")  # Result: answer + objects with per-frame masks
result.save("out/")                                         # result.json (RLE), masks/*.png, overlay.gif
result = pipe.ask("clip.mp4", "What is [0] doing?", regions=[Point(120, 80, frame=5)])  # 6th frame read
chat = pipe.chat("clip.mp4")                                # turns reuse the encoded frames
chat.send("Please segment the dog."); chat.send("What is it doing?")
```

The family is chosen by `config.json`'s `model_type`. Checkpoints are read from disk only (safetensors; pickle files
are refused). `pixelwise.load()` without a path loads the default model shipped with pixelwise; other families
plug in with `pixelwise.register_family(model_type, builder)`.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.hub import resolve_checkpoint
from pixelwise.pipeline.base import Pipeline, Query, normalize_regions, resolve_device
from pixelwise.pipeline.check import read_config
from pixelwise.pipeline.media import PROPAGATE_MODES, QueryMedia, open_query_media

Builder = Callable[[Path, Any, Any], Pipeline]  # (checkpoint folder, device, dtype) -> pipeline

# model_type of config.json -> its pipeline: a builder registered at run time, or "module:Class" imported on first
# use (the class's `from_pretrained(path, device=, dtype=)` is the builder).
_FAMILIES: dict[str, Builder | str] = {
    "pixel_qwen2_5_vl": "pixelwise.models.unipixel.pipeline_unipixel:UniPixelPipeline",
    "pixelwise_pixellm": "pixelwise.models.pixellm.pipeline_pixellm:PixelLMPipeline",
    "pixelwise_ufo": "pixelwise.models.ufo.pipeline_ufo:UFOPipeline",
    "pixelwise_pixelsail": "pixelwise.models.pixelsail.pipeline_pixelsail:PixelSailPipeline",
    "pixelwise_vitron": "pixelwise.models.vitron.pipeline_vitron:VitronPipeline",
}

# The default model (a tiny UniPixel trained on PixelWorld) ships inside the package.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "unipixel-tiny"
OLD_DEFAULT_NAME = "pixelworld-tiny"  # its name until 2026-12: still loads, with a DeprecationWarning


def register_family(model_type: str, builder: Builder | str) -> None:
    """Make `load` build `builder(path, device, dtype)` for checkpoints whose config.json has this `model_type`."""
    _FAMILIES[model_type] = builder


def families() -> list[str]:
    return sorted(_FAMILIES)


def load(path: str | Path | None = None, *, device: Any = "auto", dtype: Any = None,
         threads: int | None = None, local_files_only: bool = False) -> Pipeline:
    """Load a checkpoint folder or a Hugging Face repo id (`owner/name[@revision]`, from the local cache first,
    downloaded unless `HF_HUB_OFFLINE=1` or `local_files_only`) as a ready-to-use pipeline; default: the shipped
    default model.

    `device`: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ... `dtype`: "fp32", "bf16", "fp16" or a torch
    dtype (default: bfloat16 on GPU, float32 on CPU). Attention runs through torch SDPA (no flash-attn needed).
    `threads`: torch's CPU threads for this process (default: torch's own, one per physical core, which is the
    fastest on an otherwise idle machine; on a machine shared with other jobs fewer threads are faster, see
    docs/benchmarks.md).
    """
    if threads is not None:
        import torch

        if int(threads) < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    if path is None:
        if not (DEFAULT_MODEL / "config.json").is_file():
            raise CheckpointError(
                "no default model is installed in this pixelwise build yet; pass a checkpoint folder, "
                "e.g. pixelwise.load('checkpoints/UniPixel-3B') or --model checkpoints/UniPixel-3B")
        path = DEFAULT_MODEL
    elif Path(path).name == OLD_DEFAULT_NAME and not Path(path).exists():
        warnings.warn(f"{path}: the default model's folder is now {DEFAULT_MODEL.name} (renamed from "
                      f"{OLD_DEFAULT_NAME}); loading {DEFAULT_MODEL}", DeprecationWarning, stacklevel=2)
        path = DEFAULT_MODEL
    folder = resolve_checkpoint(path, local_files_only=local_files_only)
    model_type = read_config(folder).get("model_type")
    if model_type not in _FAMILIES:
        raise CheckpointError(f"{folder}: model_type {model_type!r} is not supported; known: {', '.join(families())}")
    builder = _FAMILIES[model_type]
    if isinstance(builder, str):
        module, _, name = builder.partition(":")
        builder = getattr(importlib.import_module(module), name).from_pretrained
    return builder(folder, device=device, dtype=dtype)


__all__ = ["DEFAULT_MODEL", "PROPAGATE_MODES", "Pipeline", "Query", "QueryMedia", "families", "load", "normalize_regions",
           "open_query_media", "register_family", "resolve_device"]
