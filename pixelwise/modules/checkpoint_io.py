"""`model.safetensors` for the small families (PixelLM, UFO, Pixel-SAIL, VITRON): tied weights stored once, loaded after the header
check of `pixelwise.core.checkpoint` with every shape compared to the model the config builds."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pixelwise.core.checkpoint import check_model_bytes, load_safetensors
from pixelwise.core.errors import CheckpointError, ConfigError, PixelwiseError
from pixelwise.core.io import atomic_write_bytes

WEIGHTS_NAME = "model.safetensors"


def _tied_aliases(model: nn.Module) -> dict[str, str]:
    """Parameter names that share storage with an earlier name (e.g. lm_head.weight -> embed_tokens.weight)."""
    seen: dict[int, str] = {}
    alias: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        key = id(p)
        if key in seen and seen[key] != name:
            alias[name] = seen[key]
        else:
            seen[key] = name
    return alias


def save_weights(model: nn.Module, path: str | Path, exclude_prefixes: tuple[str, ...] = ()) -> Path:
    """Write the state dict atomically; `exclude_prefixes` drops training-only heads from a release."""
    from safetensors.torch import save


    alias = _tied_aliases(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if k not in alias and not k.startswith(exclude_prefixes)}
    return atomic_write_bytes(Path(path) / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))


RELEASE_DTYPES = ("float32", "float16", "bfloat16")  # what `cast_weights` writes


def cast_weights(path: str | Path, dtype: str) -> Path:
    """Rewrite a folder's `model.safetensors` with its floating-point tensors in `dtype` ("float16" / "bfloat16";
    a release half the size; `load_weights` casts back to the model's dtype), atomically."""
    import torch
    from safetensors.torch import load_file, save

    if dtype not in RELEASE_DTYPES:
        raise ValueError(f"release dtype must be one of {', '.join(RELEASE_DTYPES)}, got {dtype!r}")
    to = getattr(torch, dtype)
    file = Path(path) / WEIGHTS_NAME
    state = {k: v.to(to) if v.is_floating_point() else v for k, v in load_file(str(file)).items()}
    return atomic_write_bytes(file, save(state, metadata={"format": "pt"}))


def save_model_folder(model: nn.Module, path: str | Path, config, processor=None,
                      exclude_prefixes: tuple[str, ...] = ()) -> Path:
    """A family's checkpoint folder: `config.json` (`config.save_pretrained`), `model.safetensors` (atomic, without
    `exclude_prefixes`) and, if given, the processor's files."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    save_weights(model, path, exclude_prefixes=exclude_prefixes)
    if processor is not None:
        processor.save_pretrained(path)
    return path


def build_model(factory, path: str | Path):
    """`factory()` (the family's model from its config) after two checks that allocate nothing: it builds on the
    meta device (a config that breaks construction, e.g. zero heads, is a ConfigError, not a ZeroDivisionError),
    and the parameters it declares fit the weights on disk (`core.checkpoint.check_model_bytes`)."""
    import torch


    file = Path(path) / WEIGHTS_NAME
    if not file.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME}")
    try:
        with torch.device("meta"):
            probe = factory()
    except PixelwiseError:
        raise
    except (ArithmeticError, ValueError, TypeError, RuntimeError, KeyError, IndexError, AttributeError) as e:
        raise ConfigError(f"{path}/config.json: the model cannot be built from it ({type(e).__name__}: {e})") from None
    check_model_bytes(probe, [file], str(path))
    del probe
    return factory()


def load_weights(model: nn.Module, path: str | Path) -> None:
    file = Path(path) / WEIGHTS_NAME
    if not file.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME}")
    alias = _tied_aliases(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in alias}
    state = load_safetensors(file, expected)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{file}: missing tensors {missing[:6]}, unexpected tensors {extra[:6]}")
    for name, target in alias.items():
        state[name] = state[target]
    model.load_state_dict(state, strict=True)
