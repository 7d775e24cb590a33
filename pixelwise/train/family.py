"""The training loop of PixelLM, UFO, Pixel-SAIL and VITRON on PixelWorld, readable top to bottom.

A family recipe (`pixelwise/recipes/<family>/train_<family>.py`) gives three things: its defaults, how to build a model and
processor around a tokenizer, and how a list of dataset items becomes a loss. This file does the rest: the
tokenizer (the shared offline byte-level BPE of `pixelwise.train.tiny` plus the family's special tokens), data
(`PixelWorldDataset` through the resumable sampler), AdamW + cosine schedule (`pixelwise.train.optim`, one weight-decay rule),
gradient clipping, a wall-clock budget, metrics in `metrics.jsonl`, a progress bar that moves every step, atomic
checkpoints in the run folder (`pixelwise.train.state`: exact `--resume`; Ctrl-C / SIGTERM save one) and the model in
the output folder at each of them (loadable by `pixelwise.load` at any time).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.errors import ConfigError
from pixelwise.core.io import atomic_write_text
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.modules.checkpoint_io import RELEASE_DTYPES, cast_weights
from pixelwise.train.config import load_recipe_config, merge
from pixelwise.train.logging import RunLogger
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import claim_run_dir, load_checkpoint, resume_checkpoint, save_checkpoint
from pixelwise.train.stop import StopRequest
from pixelwise.train.tiny import build_tokenizer as bpe

COMMON_DEFAULTS: dict[str, Any] = {
    "recipe": None,  # the family's recipe name (`pixelwise train --list`), set by its defaults
    "data": "data/pw-train",  # a native PixelWorld folder (pixelwise pixelworld generate ...)
    "tasks": None,  # PixelWorld tasks to train on (None: the family's list)
    "out": None,  # checkpoint folder (config.json, model.safetensors, tokenizer.json, preprocessor_config.json)
    "run_dir": None,  # metrics.jsonl + resolved config
    "seed": 0,
    "threads": None,
    "vocab_size": 1024,  # BPE merges of the tokenizer (special tokens come on top)
    "corpus_samples": 20000,  # samples whose texts train the tokenizer
    "frame_pixels": 128 * 128,  # fixed LLM frame budget (patch 8, merge 2: 8 x 8 merged tokens at 128 px)
    "steps": 3000,
    "batch_size": 8,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "betas": [0.9, 0.95],
    "warmup": 100,
    "clip": 1.0,
    "max_seconds": 700,  # wall-clock budget; the schedule still assumes `steps`
    "log_every": 20,
    "ckpt_every": 200,
    "model": {},  # family config overrides
    "init": None,  # a checkpoint folder to continue from (its weights, tokenizer and model config: fine-tuning)
    "release_dtype": "float32",  # the dtype of the weights written to `out` (float16 halves a committed checkpoint)
}


def load_config(path: str | Path | None, defaults: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """COMMON_DEFAULTS <- the family's defaults <- YAML file <- `key=value` overrides, strict
    (`pixelwise.train.config`; the family's `model` section is checked by its config class)."""
    base = merge(COMMON_DEFAULTS, defaults)
    cfg = load_recipe_config(path, base, overrides, free=("model",))
    if not cfg["out"]:
        raise ConfigError("the recipe needs `out` (the checkpoint folder)")
    if not isinstance(cfg["model"], dict):
        raise ConfigError(f"`model` must be a mapping of the family's config keys, got {cfg['model']!r}")
    if cfg["init"]:
        check_init(cfg, base)
    if cfg["release_dtype"] not in RELEASE_DTYPES:
        raise ConfigError(f"release_dtype must be one of {', '.join(RELEASE_DTYPES)}, got {cfg['release_dtype']!r}")
    return cfg


def build_tokenizer(data: str | Path, tasks: Sequence[str], vocab_size: int, extra_tokens: Sequence[str],
                    max_samples: int, templates: Sequence[str] = ()):
    """The shared offline BPE trained on the dataset's texts + the family's special tokens (after the BPE ids)."""
    from tokenizers import AddedToken


    corpus: list[str] = list(templates)
    with open(Path(data) / "samples.jsonl") as f:
        for n, line in enumerate(f):
            if n >= max_samples:
                break
            s = json.loads(line)
            if s["task"] in tasks:
                corpus += [t for t in (s.get("question"), s.get("answer"), s.get("phrase")) if t]
    tok = bpe(corpus, vocab_size=vocab_size)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra_tokens])
    return tok


BUILD_ONLY = ("model", "vocab_size", "corpus_samples", "frame_pixels")  # what a new model is built from


def check_init(cfg: dict[str, Any], base: dict[str, Any]) -> None:
    """`init` continues a released model: the keys that would build a new one must stay at their defaults, the
    folder must be a checkpoint, and the run must not write into it."""
    init = Path(cfg["init"])
    changed = [k for k in BUILD_ONLY if cfg[k] != base[k]]
    if changed:
        raise ConfigError(f"init {str(init)!r} brings its own model, tokenizer and processor; drop "
                          f"{', '.join(changed)} (they only build a new model)")
    if not (init / "config.json").is_file():
        raise ConfigError(f"init {str(init)!r} is not a checkpoint folder (no config.json)")
    if init.resolve() == Path(cfg["out"]).resolve():
        raise ConfigError(f"out {cfg['out']!r} is the init folder: the first checkpoint would overwrite the model "
                          "it starts from; choose another out")


def train(cfg: dict[str, Any], build: Callable[[dict[str, Any]], tuple[torch.nn.Module, Any]],
          step_loss: Callable[[torch.nn.Module, Any, list, np.random.Generator], tuple[torch.Tensor, dict]],
          tasks: Sequence[str], load: Callable[[Path], tuple[torch.nn.Module, Any]], resume: bool = False,
          overwrite: bool = False) -> Path:
    """Run the loop; returns the checkpoint folder. `resume` continues exactly from the run's latest checkpoint
    (weights, optimizer, schedule, data position, random state). With `cfg["init"]`, the model and processor are the
    recipe's `load` of that checkpoint folder (a new optimizer and schedule) instead of a new `build`."""

    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["out"])
    run_dir = claim_run_dir(cfg["run_dir"] or out.parent / (out.name + "-run"), resume, overwrite)
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])

    dataset = datasets(cfg["data"], tasks)  # first: a missing folder is named before anything is built
    model, processor = build(cfg) if not cfg["init"] else load_init(cfg, load)
    sampler = ResumableSampler(len(dataset), seed=cfg["seed"])
    opt = build_optimizer(model, OptimConfig(lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=tuple(cfg["betas"])))
    sched = cosine_with_warmup(opt, cfg["steps"], cfg["warmup"], min_lr_ratio=0.05)
    start = 0
    if resume and (ck := resume_checkpoint(run_dir)) is not None:
        state = load_checkpoint(ck, model, opt, sched)
        start = state.step
        sampler.load_state_dict(state.sampler)
        rng.bit_generator.state = state.sampler["step_rng"]
        print(f"resumed from {ck} at step {start}", flush=True)
    logger = RunLogger(run_dir, cfg, cfg["steps"], tensorboard=False, start_step=start)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {type(model).__name__} ({n_params / 1e6:.2f} M parameters) on {len(dataset)} samples", flush=True)

    def checkpoint(step: int, metrics: dict[str, float]) -> None:
        save_checkpoint(run_dir, step, model, opt, sched, {**sampler.state_dict(), "step_rng": rng.bit_generator.state},
                        metrics)
        model.eval()
        model.save_pretrained(out, processor)  # a usable model at every checkpoint
        if cfg["release_dtype"] != "float32":
            cast_weights(out, cfg["release_dtype"])
        model.train()

    t0 = time.perf_counter()
    stop = StopRequest()
    model.train()
    acc: dict[str, float] = {}
    step, last = start, {}
    batches = iter(sampler)
    try:
        while step < cfg["steps"]:
            items = [dataset[next(batches)] for _ in range(cfg["batch_size"])]
            loss, parts = step_loss(model, processor, items, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
            opt.step()
            sched.step()
            step += 1
            last = {"loss": float(loss.detach()), **parts}
            for k, v in last.items():
                acc[k] = acc.get(k, 0.0) + v
            elapsed = time.perf_counter() - t0
            logger.tick(step, last["loss"], (step - start) * cfg["batch_size"] / max(elapsed, 1e-9))
            if step % cfg["log_every"] == 0:
                n = step % cfg["log_every"] or cfg["log_every"]
                metrics = {k: v / n for k, v in acc.items()}
                metrics.update(lr=sched.get_last_lr()[0], grad_norm=float(gnorm))
                logger.log(step, metrics, samples_seen=(step - start) * cfg["batch_size"])
                acc = {}
            if stop.agreed():
                checkpoint(step, last)
                print(f"interrupted: checkpoint at step {step} in {run_dir}; continue with --resume", flush=True)
                break
            if step % cfg["ckpt_every"] == 0 and step < cfg["steps"]:
                checkpoint(step, last)
            if elapsed > cfg["max_seconds"]:
                checkpoint(step, last)
                print(f"stopping at step {step}: wall-clock budget of {cfg['max_seconds']} s reached; continue "
                      "with --resume", flush=True)
                break
        else:
            checkpoint(step, last)
    finally:
        stop.restore()
        logger.close()
    summary = {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "samples": (step - start) *
               cfg["batch_size"], "parameters": n_params}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return out


def load_init(cfg: dict[str, Any], load: Callable[[Path], tuple[torch.nn.Module, Any]]
              ) -> tuple[torch.nn.Module, Any]:
    """The model and processor of `init` (`check_init` passed), in float32 (a release in float16 trains in
    float32); a config that keeps training notes records where this run started."""
    model, processor = load(Path(cfg["init"]))
    notes = getattr(model.config, "notes", None)
    if isinstance(notes, dict):
        model.config.notes = {"init": str(cfg["init"]), "init_notes": notes, "data": cfg["data"],
                              "tasks": list(cfg["tasks"]), "steps": cfg["steps"], "batch": cfg["batch_size"]}
    return model.float(), processor


def recipe_runner(defaults: dict[str, Any], build: Callable, step_loss: Callable,
                  load: Callable[[Path], tuple[torch.nn.Module, Any]]) -> Callable[..., Path]:
    """A recipe module's `run(config, overrides, resume, overwrite)` from its defaults, `build`, `step_loss` and
    (for `init`) `load`: checkpoint folder -> (model, processor)."""

    def run(config: str | Path | None = None, overrides: Sequence[str] = (), resume: bool = False,
            overwrite: bool = False) -> Path:
        cfg = load_config(config, defaults, overrides)
        return train(cfg, build, step_loss, cfg["tasks"], load, resume=resume, overwrite=overwrite)

    return run


def datasets(data: str | Path | Sequence[str | Path], tasks: Sequence[str]) -> torch.utils.data.Dataset:
    """One native PixelWorld folder, or several read as one dataset (in order)."""
    roots = [data] if isinstance(data, (str, Path)) else list(data)
    parts = [PixelWorldDataset(r, tasks=list(tasks)) for r in roots]
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
