"""Safe weight loading: safetensors validated before anything is allocated; pickle refused unless asked for.

* `read_safetensors_header` parses and checks a safetensors header against the file itself: known dtypes,
  non-negative shapes, byte ranges that equal `prod(shape) * itemsize`, do not overlap, and cover the data region
  exactly (a truncated file, or a tensor occupying more bytes than its declared shape, is refused).
* `load_safetensors` loads only after that check, optionally after comparing shapes with what a config declares.
* `load_weights` is the one entry point for a weights file of any kind: pickle-based files (`.bin`, `.pt`, ...,
  or anything that looks like a pickle / torch zip) are refused unless `allow_pickle=True`, and even then go
  through `torch.load(weights_only=True)`, which refuses arbitrary globals.
* `restricted_pickle_loads` reads *data* pickles (dataset annotation files) with no globals at all, so a payload
  (`os.system`, `eval`, ...) cannot run.
* `check_config_fields` / `check_token_ids` validate config values (type, range, vocabulary) before a model is built.

Nothing here ever passes `trust_remote_code`: pixelwise runs no code shipped with a checkpoint.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.io import parse_json

# bytes per element of every dtype safetensors can store
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit safetensors itself applies
DEFAULT_MAX_CHECKPOINT_BYTES = int(os.environ.get("PIXELWISE_MAX_CHECKPOINT_BYTES", str(64 << 30)))


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets inside the data region
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors_header(path: str | Path, max_bytes: int | None = None) -> dict[str, TensorInfo]:
    """Parse and validate the header of a safetensors file; reads only the header, allocates no tensor."""
    path = Path(path)
    max_bytes = DEFAULT_MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"{path}: {size} bytes exceeds the checkpoint limit of {max_bytes} bytes")
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes, no header)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > MAX_HEADER_BYTES or n > size - 8:
                raise CheckpointError(f"{path}: not a safetensors file (header length {n} for a {size}-byte file)")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    header = parse_json(raw, f"{path}: safetensors header", CheckpointError)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header must be a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(f"{path}: safetensors __metadata__ must map strings to strings")
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: header entry must be an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{where}: data_offsets must be [start, end] with 0 <= start <= end, got {offsets!r}")
        need = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != need:
            raise CheckpointError(
                f"{where}: declares {dtype} {tuple(shape)} ({need} bytes) but occupies {offsets[1] - offsets[0]} bytes"
            )
        infos[name] = TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])
    data_bytes = size - 8 - n
    cursor = 0
    for name, info in sorted(infos.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if info.start != cursor:
            what = "overlaps the previous tensor" if info.start < cursor else "leaves a gap before it"
            raise CheckpointError(f"{path}: tensor {name!r} {what} (starts at byte {info.start}, expected {cursor})")
        cursor = info.end
    if cursor != data_bytes:
        if cursor > data_bytes:
            raise CheckpointError(f"{path}: file is truncated: tensors need {cursor} bytes of data, it has {data_bytes}")
        raise CheckpointError(f"{path}: {data_bytes - cursor} trailing bytes after the last tensor")
    return infos


def check_shapes(infos: Mapping[str, TensorInfo], expected: Mapping[str, Iterable[int]], source: str) -> None:
    """Compare header shapes with the shapes a config implies (only for names in both); refuse any difference."""
    bad = [f"{k} is {infos[k].shape}, expected {tuple(v)}" for k, v in expected.items()
           if k in infos and infos[k].shape != tuple(v)]
    if bad:
        raise CheckpointError(f"{source}: tensor shapes do not match the config: " + "; ".join(bad[:8]))


WEIGHT_DTYPES = ("F16", "BF16", "F32", "F64")  # what model weights are stored as
ALLOW_NONFINITE = os.environ.get("PIXELWISE_ALLOW_NONFINITE_WEIGHTS", "") == "1"


def load_safetensors(path: str | Path, expected_shapes: Mapping[str, Iterable[int]] | None = None,
                     max_bytes: int | None = None, allow_nonfinite: bool | None = None) -> dict[str, Any]:
    """All tensors of one safetensors file, after `read_safetensors_header` (and `check_shapes`) passed.

    Weights must be floating point (a bool or int64 tensor where a weight belongs is refused by name) and finite:
    a NaN or inf weight makes every answer garbage ("!!!!"), so it is refused with the tensor's name unless
    `allow_nonfinite` (or PIXELWISE_ALLOW_NONFINITE_WEIGHTS=1) asks for it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    infos = read_safetensors_header(path, max_bytes)
    if expected_shapes is not None:
        check_shapes(infos, expected_shapes, str(path))
    bad = [f"{k} ({v.dtype})" for k, v in infos.items() if v.dtype not in WEIGHT_DTYPES]
    if bad:
        raise CheckpointError(f"{path}: weights must be floating point ({', '.join(WEIGHT_DTYPES)}); "
                              f"{', '.join(bad[:4])}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    if not (ALLOW_NONFINITE if allow_nonfinite is None else allow_nonfinite):
        import torch

        for name, tensor in state.items():
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path}: tensor {name} holds NaN or inf values (set "
                                      "PIXELWISE_ALLOW_NONFINITE_WEIGHTS=1 to load it anyway)")
    return state


def check_model_bytes(model: Any, weight_files: Iterable[str | Path], source: str, slack: float = 2.0) -> None:
    """A config must not describe a model much larger than its weights: `model` is the family's model built on the
    meta device (no memory), and its parameter bytes may exceed the tensors stored in `weight_files` only by
    `slack` (a bf16 checkpoint loaded in float32 doubles) plus 16 MiB (tied or derived tensors). An absurd size in
    config.json (layers, widths, vocabulary, image size) is refused here, before anything is allocated."""
    stored = sum(info.nbytes for f in weight_files for info in read_safetensors_header(f).values())
    needed = sum(p.numel() * p.element_size() for p in model.parameters())
    if needed > slack * stored + (16 << 20):
        raise CheckpointError(f"{source}: config.json describes a model of {needed / 2**20:.0f} MiB of parameters, "
                              f"but the weights hold {stored / 2**20:.0f} MiB: a size in the config is wrong")


def looks_like_pickle(path: str | Path) -> bool:
    """By suffix, or by content: a pickle stream (protocol 2+) or a torch zip archive."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"


def load_weights(path: str | Path, allow_pickle: bool = False, expected_shapes: Mapping[str, Iterable[int]] | None = None,
                 max_bytes: int | None = None) -> dict[str, Any]:
    """Tensors of one weights file. Safetensors always; pickle-based only with `allow_pickle` and `weights_only`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if path.suffix.lower() == ".safetensors":
        return load_safetensors(path, expected_shapes, max_bytes)
    if not looks_like_pickle(path):
        raise CheckpointError(f"{path}: not a .safetensors file")
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: pickle-based weights are refused (unpickling can run arbitrary code); convert the file to "
            "safetensors, or pass --allow-pickle if you trust it (loaded with torch.load(weights_only=True))"
        )
    return _torch_load_weights_only(path, expected_shapes, max_bytes)


def _torch_load_weights_only(path: Path, expected_shapes, max_bytes: int | None) -> dict[str, Any]:
    import torch

    max_bytes = DEFAULT_MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    if path.stat().st_size > max_bytes:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes exceeds the checkpoint limit of {max_bytes} bytes")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except Exception as e:  # noqa: BLE001 — weights_only refusals are UnpicklingError; corrupt files raise many types
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True) ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors")
    if expected_shapes is not None:
        infos = {k: TensorInfo("?", tuple(v.shape), 0, 0) for k, v in obj.items()}
        check_shapes(infos, expected_shapes, str(path))
    return obj


class _NoGlobalsUnpickler(pickle.Unpickler):
    allowed = frozenset({("_codecs", "encode")})  # how protocol-2 pickles store bytes; harmless

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def restricted_pickle_loads(data: bytes, source: str = "pickle", encoding: str = "ASCII") -> Any:
    """Unpickle plain data (dicts, lists, strings, numbers, bytes); any class or function reference is refused.

    Raises `pickle.UnpicklingError` (and the usual decoding errors) like `pickle.loads`; callers map it to their
    error type.
    """
    return _NoGlobalsUnpickler(io.BytesIO(data), encoding=encoding).load()


# --------------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Field:
    """What a config value must be: its type(s) and an inclusive range."""

    types: type | tuple[type, ...] = int
    min: float | None = None
    max: float | None = None
    required: bool = True


def check_config_fields(cfg: Mapping[str, Any], fields: Mapping[str, Field], source: str = "config") -> None:
    """Refuse a missing field, a value of the wrong type (bools are not ints), a non-finite or out-of-range value."""
    for key, spec in fields.items():
        if key not in cfg or cfg[key] is None:
            if spec.required:
                raise ConfigError(f"{source}: missing field {key!r}")
            continue
        v = cfg[key]
        types = spec.types if isinstance(spec.types, tuple) else (spec.types,)
        ok_type = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if not ok_type:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{source}: {key!r} must be {names}, got {type(v).__name__} {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(f"{source}: {key!r} must be finite, got {v!r}")
            if spec.min is not None and v < spec.min:
                raise ConfigError(f"{source}: {key!r} must be >= {spec.min:g}, got {v!r}")
            if spec.max is not None and v > spec.max:
                raise ConfigError(f"{source}: {key!r} must be <= {spec.max:g}, got {v!r}")


def check_token_ids(cfg: Mapping[str, Any], keys: Iterable[str], vocab_size: int, source: str = "config") -> None:
    """Every token id present under `keys` (an int, or a list of ints) must lie in [0, vocab_size)."""
    for key in keys:
        v = cfg.get(key)
        if v is None:
            continue
        ids = v if isinstance(v, list) else [v]
        for t in ids:
            if not _is_int(t) or not 0 <= t < vocab_size:
                raise ConfigError(f"{source}: {key!r} = {t!r} is not a token id inside the vocabulary (size {vocab_size})")
