"""Reading and writing UniPixel weights in the official on-disk layout (safetensors only): the weight loader of
`modeling_unipixel` (which imports this module, never the other way round).

The official checkpoints were saved by transformers 4.53.3, whose backward-compatible save mapping writes the Qwen
part under its *legacy* names:
| in memory (ours)          | on disk (official)                    |
|---------------------------|---------------------------------------|
| `visual.*`                | `visual.*`                            |
| `language_model.*`        | `model.*` (`model.embed_tokens`, `model.layers.N`, `model.norm`) |
| `lm_head.weight`          | `lm_head.weight`, absent when tied to the embeddings (3B)        |
| `sam2.*`, `seg_head.*`, `ref_*`, `tem_*`, `msk_proj.*` | unchanged |

Newer in-memory names (`model.visual.*`, `model.language_model.*`) are accepted on load too. The three random Fourier
matrices (`sam2.sam_prompt_encoder.pe_layer...`, `ref_encoder.pe_layer...`, `tem_pe...`) are persistent buffers and
are loaded like weights, never re-sampled.

Pickle-based files (`.bin`, `.pt`, `.pth`, `.ckpt`) are refused: unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from pixelwise.core.checkpoint import load_safetensors
from pixelwise.core.errors import CheckpointError
from pixelwise.core.io import atomic_write, atomic_write_text, read_json

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MAX_LISTED = 8


# ----------------------------------------------------------------------------------------------- key names


def official_to_internal(key: str) -> str:
    """On-disk (legacy 4.53 or new-style) key -> our module path."""
    if key.startswith("model.visual."):
        return key[len("model."):]
    if key.startswith("model.language_model."):
        return key[len("model."):]
    if key.startswith("visual."):
        return key
    if key.startswith("model."):
        return "language_model." + key[len("model."):]
    return key


def internal_to_official(key: str) -> str:
    """Our module path -> the legacy on-disk key the official loader (and transformers 4.53) expects."""
    if key.startswith("language_model."):
        return "model." + key[len("language_model."):]
    return key


# ----------------------------------------------------------------------------------------------- files


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    head = ", ".join(keys[:_MAX_LISTED])
    return head + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder (single file or sharded with an index), or one file."""
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path}: pickle-based weights are refused (unsafe to load); convert to safetensors")
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: not a .safetensors file")
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder or file")
    index = path / WEIGHTS_INDEX_NAME
    if index.is_file():
        data = read_json(index, CheckpointError)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: needs a 'weight_map' object of tensor name -> file name")
        files = []
        for name in dict.fromkeys(weight_map.values()):
            f = path / name
            if Path(name).name != name:
                raise CheckpointError(f"{index}: shard name {name!r} must be a plain file name")
            if not f.is_file():
                raise CheckpointError(f"{index}: shard {name} is missing")
            files.append(f)
        return files
    single = path / WEIGHTS_NAME
    if single.is_file():
        return [single]
    found = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(
            f"{path}: only pickle-based weights found ({', '.join(found)}); these are refused because unpickling can run "
            "arbitrary code. Convert them to safetensors first."
        )
    others = sorted(p.name for p in path.glob("*.safetensors"))
    if len(others) == 1:
        return [path / others[0]]
    raise CheckpointError(f"{path}: no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint, keys as on disk. Safetensors only; duplicate keys across shards are an error."""

    out: dict[str, torch.Tensor] = {}
    for f in weight_files(path):
        part = load_safetensors(f)  # header validated (dtypes, shapes, byte ranges, truncation) before loading
        dup = out.keys() & part.keys()
        if dup:
            raise CheckpointError(f"{f}: keys also present in another shard: {_listing(dup)}")
        out.update(part)
    return out


# ----------------------------------------------------------------------------------------------- load / save


def load_official_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor],
                             source: str = "checkpoint", assign: bool = False,
                             dtype: torch.dtype | None = None) -> None:
    """Load an official-layout state dict into `model`; every mismatch is a `CheckpointError`.

    Missing keys, unexpected keys and shape mismatches are all reported (first few of each). A tied `lm_head`
    may be absent (it is the embedding matrix); an untied one must be present. `assign=True` makes the checkpoint
    tensors (cast to `dtype`) the model's parameters, for a model built on the meta device.
    """
    internal = {official_to_internal(k): v for k, v in state.items()}
    if len(internal) != len(state):
        raise CheckpointError(f"{source}: the same tensor appears under both legacy and new key names")
    sam2_state = {k[len("sam2."):]: v for k, v in internal.items() if k.startswith("sam2.")}
    own_state = {k: v for k, v in internal.items() if not k.startswith("sam2.")}

    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("sam2.")}
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        if "lm_head.weight" in own_state:
            lm = own_state.pop("lm_head.weight")
            emb = own_state.get("language_model.embed_tokens.weight")
            if emb is not None and (lm.shape != emb.shape or not torch.equal(lm, emb)):
                raise CheckpointError(f"{source}: lm_head.weight differs from the tied embedding matrix")

    problems = []
    missing = expected.keys() - own_state.keys()
    unexpected = own_state.keys() - expected.keys()
    if missing:
        problems.append(f"missing keys: {_listing(internal_to_official(k) for k in missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(internal_to_official(k) for k in unexpected)}")
    bad_shapes = [
        f"{internal_to_official(k)} has shape {tuple(own_state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items() if k in own_state and own_state[k].shape != v.shape
    ]
    if bad_shapes:
        problems.append("shape mismatch: " + "; ".join(bad_shapes[:_MAX_LISTED]))
    if model.sam2 is None and sam2_state and model.config.has_sam2:
        pass  # SAM2 module unavailable: its weights are not used, segmentation reports why
    elif model.sam2 is None and sam2_state:
        problems.append(f"unexpected keys: {_listing('sam2.' + k for k in sam2_state)}")
    elif model.sam2 is not None and not sam2_state:
        problems.append("missing keys: no sam2.* weights")
    if problems:
        raise CheckpointError(f"{source}: weights do not match the config — " + " | ".join(problems))

    if assign:
        cast = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in own_state.items()}
        model.load_state_dict(cast, strict=False, assign=True)
        if model.config.tie_word_embeddings:
            model.lm_head.weight = model.language_model.embed_tokens.weight
    else:
        with torch.no_grad():
            params = dict(model.named_parameters())
            buffers = dict(model.named_buffers())
            for k, v in own_state.items():
                target = params.get(k, buffers.get(k))
                target.copy_(v.to(target.dtype))
    if model.sam2 is not None:
        if dtype is not None:
            model.sam2.to(dtype)
            sam2_state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sam2_state.items()}
        try:
            model.sam2.load_official_state_dict(sam2_state)
        except CheckpointError as e:
            raise CheckpointError(f"{source}: SAM2 part: {e}") from e


def official_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under official on-disk names (tied lm_head left out, as transformers 4.53 writes it)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.startswith("sam2."):
            continue
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        out[internal_to_official(k)] = v
    if model.sam2 is not None:
        export = getattr(model.sam2, "official_state_dict", None)
        sam2_sd = export() if callable(export) else model.sam2.state_dict()
        out.update({f"sam2.{k}": v for k, v in sam2_sd.items()})
    return out


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path, max_shard_bytes: int | None = None) -> list[Path]:
    """Write safetensors (one file, or shards + `model.safetensors.index.json` when over `max_shard_bytes`)."""
    from safetensors.torch import save


    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    # Tensors sharing storage (e.g. a tied head kept under two names) must be written as copies.
    seen: dict[int, str] = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen and v.numel():
            state[k] = v.clone()
        seen.setdefault(ptr, k)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(state):
        nbytes = state[k].numel() * state[k].element_size()
        if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = state[k]
        size += nbytes
    meta = {"format": "pt"}
    written = []
    if len(shards) == 1:
        with atomic_write(path / WEIGHTS_NAME) as f:
            f.write(save(shards[0], metadata=meta))
        return [path / WEIGHTS_NAME]
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        with atomic_write(path / name) as f:
            f.write(save(shard, metadata=meta))
        written.append(path / name)
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(path / WEIGHTS_INDEX_NAME, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written
