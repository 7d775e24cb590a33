"""Training checkpoints: everything needed to continue a run exactly, written atomically, no pickle.

Layout of one checkpoint (a folder, renamed into place only when complete):
    step_000120/
        model.safetensors       trainable (or all) parameters + persistent buffers
        optimizer.safetensors   optimizer tensors (exp_avg, ...), flattened as state.<param>.<name>
        trainer_state.json      step, optimizer scalars/param_groups, scheduler, sampler position, RNG, metrics
A run folder keeps the newest `keep` checkpoints and a `latest` file naming the newest complete one. A run killed at
any instant leaves either the previous or the new checkpoint complete, never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.io import atomic_write_text


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            key = f"state.{pid}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, Any]:
    return {
        "python": _jsonable(random.getstate()),
        "numpy": _jsonable(np.random.get_state()),
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    return x


def model_state(model: torch.nn.Module, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """Parameters (all, or only those with requires_grad) plus persistent buffers, detached on CPU.

    Tied parameters appear once (safetensors refuses shared storage).
    """
    sd = model.state_dict()
    if trainable_only:
        keep = {n for n, p in model.named_parameters() if p.requires_grad}
        keep |= {n for n, _ in model.named_buffers()}
        sd = {k: v for k, v in sd.items() if k in keep}
    out, seen = {}, {}
    for k, v in sd.items():
        v = v.detach().cpu()
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        if ptr is not None and ptr in seen:
            continue
        if ptr is not None:
            seen[ptr] = k
        out[k] = v.contiguous()
    return out


@dataclass
class TrainState:
    step: int
    sampler: dict[str, Any]
    metrics: dict[str, float]


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    sampler_state: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    trainable_only: bool = False,
    keep: int = 2,
    model_tensors: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write checkpoint `step` under `run_dir/checkpoints/` atomically and prune old ones.

    `model_tensors` / `optimizer_state` let a distributed recipe pass full (gathered) states instead of the
    module's local ones.
    """
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".step_{step:07d}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors = model_tensors if model_tensors is not None else model_state(model, trainable_only)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    meta: dict[str, Any] = {"step": step, "metrics": metrics or {}, "sampler": sampler_state or {}, "rng": rng_state()}
    if optimizer is not None or optimizer_state is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer_state or optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    (tmp / "trainer_state.json").write_text(json.dumps(meta))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():
        _discard(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_root)  # the rename itself survives a power cut
    atomic_write_text(ckpt_root / "latest", final.name)
    _prune(ckpt_root, keep)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill at any moment leaves either the whole folder or a `.trash_*` one:
    renamed first (atomic), then deleted. A half-deleted `step_*` folder is never left to be taken for a
    checkpoint."""
    trash = folder.with_name(f".trash_{folder.name}.{os.getpid()}")
    os.replace(folder, trash)
    _fsync_dir(folder.parent)
    shutil.rmtree(trash, ignore_errors=True)


def _prune(ckpt_root: Path, keep: int) -> None:
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for p in done[:-keep] if keep > 0 else []:
        _discard(p)


def clean_leftovers(run_dir: str | Path) -> list[str]:
    """What a killed run leaves behind (temp folders of a checkpoint being written, `.trash_*` folders being
    deleted, a checkpoint folder without its trainer state): removed. Called on `--resume`, when no writer is
    running; returns the names removed."""
    ckpt_root = Path(run_dir) / "checkpoints"
    removed = []
    for p in [*ckpt_root.glob(".step_*.tmp*"), *ckpt_root.glob(".trash_*"),
              *(p for p in ckpt_root.glob("step_*") if p.is_dir() and not (p / "trainer_state.json").exists())]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


def claim_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """The folder of a new or resumed run. One that already holds a run (logs or checkpoints) is refused unless the
    run is resumed (`--resume`) or replaced (`--overwrite`: the old run is deleted), so logs never hold a step twice
    and a typo never restarts a long run."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    holds = any((run_dir / f).is_file() for f in ("losses.jsonl", "metrics.jsonl")) or any(
        (run_dir / "checkpoints").glob("step_*"))
    if holds and not (resume or overwrite):
        raise ConfigError(f"{run_dir} already holds a run (logs / checkpoints): continue it with --resume, replace it "
                          "with --overwrite, or choose another run folder")
    if holds and overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `--resume` continues from, after `clean_leftovers`."""
    clean_leftovers(run_dir)
    return latest_checkpoint(run_dir)


def _tied_to_loaded(model: torch.nn.Module, name: str, loaded: dict[str, torch.Tensor]) -> bool:
    """A parameter skipped at save time because it shares storage with one that was saved (tied weights)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(name)
    return target is not None and any(
        n in loaded and p.data_ptr() == target.data_ptr() for n, p in params.items() if n != name
    )


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpt_root = Path(run_dir) / "checkpoints"
    pointer = ckpt_root / "latest"
    if pointer.exists():
        path = ckpt_root / pointer.read_text().strip()
        if (path / "trainer_state.json").exists():
            return path
    done = sorted(p for p in ckpt_root.glob("step_*") if (p / "trainer_state.json").exists())
    return done[-1] if done else None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    strict: bool = True,
    restore_rng: bool = True,
) -> TrainState:
    """Restore what `save_checkpoint` wrote into the given objects; returns step / sampler / metrics."""
    path = Path(path)
    try:
        meta = json.loads((path / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable trainer_state.json ({e})") from None
    if model is not None:
        tensors = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        missing = [k for k in missing if k in trainable and not _tied_to_loaded(model, k, tensors)]
        if unexpected or (strict and missing):
            raise CheckpointError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"{path}: has no optimizer state")
        optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng:
        set_rng_state(meta["rng"])
    return TrainState(int(meta["step"]), meta.get("sampler", {}), meta.get("metrics", {}))
