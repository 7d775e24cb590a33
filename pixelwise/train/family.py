"""The training loop of the decoder-light families (PixelLM, UFO) on PixelWorld, readable top to bottom.

A family recipe (`pixelwise/models/<family>/train.py`) gives three things: its defaults, how to build a model and
processor around a tokenizer, and how a list of dataset items becomes a loss. This file does the rest: the
tokenizer (the shared offline byte-level BPE of `pixelwise.train.tiny` plus the family's special tokens), data
(`PixelWorldDataset` through the resumable sampler), AdamW + cosine schedule, gradient clipping, a wall-clock budget,
metrics in `metrics.jsonl`, and atomic weight checkpoints in the output folder (loadable by `pixelwise.load` at any
time, so an interrupted run still leaves a usable model).
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pixelwise.core.errors import ConfigError
from pixelwise.core.io import atomic_write_text
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.train.logging import RunLogger
from pixelwise.train.optim import cosine_with_warmup
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.tiny import build_tokenizer as bpe

COMMON_DEFAULTS: dict[str, Any] = {
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
}


def load_config(path: str | Path | None, defaults: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- `key=value` overrides (dotted keys, YAML values)."""
    cfg = copy.deepcopy(COMMON_DEFAULTS)
    _merge(cfg, copy.deepcopy(defaults))
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the recipe config ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the recipe config must be a mapping")
        _merge(cfg, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    unknown = sorted(set(cfg) - set(COMMON_DEFAULTS) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown recipe keys {unknown}")
    if not cfg["out"]:
        raise ConfigError("the recipe needs `out` (the checkpoint folder)")
    return cfg


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


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


def train(cfg: dict[str, Any], build: Callable[[dict[str, Any]], tuple[torch.nn.Module, Any]],
          step_loss: Callable[[torch.nn.Module, Any, list, np.random.Generator], tuple[torch.Tensor, dict]],
          tasks: Sequence[str]) -> Path:
    """Run the loop; returns the checkpoint folder."""

    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    out = Path(cfg["out"])
    run_dir = Path(cfg["run_dir"] or out.parent / (out.name + "-run"))

    model, processor = build(cfg)
    dataset = PixelWorldDataset(cfg["data"], tasks=list(tasks))
    sampler = iter(ResumableSampler(len(dataset), seed=cfg["seed"]))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name or "embed" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=tuple(cfg["betas"]))
    sched = cosine_with_warmup(opt, cfg["steps"], cfg["warmup"], min_lr_ratio=0.05)
    logger = RunLogger(run_dir, cfg, cfg["steps"], tensorboard=False, progress=False)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {type(model).__name__} ({n_params / 1e6:.2f} M parameters) on {len(dataset)} samples", flush=True)

    t0 = time.perf_counter()
    model.train()
    acc: dict[str, float] = {}
    step = 0
    for step in range(1, cfg["steps"] + 1):
        items = [dataset[next(sampler)] for _ in range(cfg["batch_size"])]
        loss, parts = step_loss(model, processor, items, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        sched.step()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            acc[k] = acc.get(k, 0.0) + v
        if step % cfg["log_every"] == 0:
            metrics = {k: v / cfg["log_every"] for k, v in acc.items()}
            metrics.update(lr=sched.get_last_lr()[0], grad_norm=float(gnorm))
            logger.log(step, metrics, samples_seen=step * cfg["batch_size"])
            print(f"step {step} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
            acc = {}
        elapsed = time.perf_counter() - t0
        if step % cfg["ckpt_every"] == 0 or elapsed > cfg["max_seconds"]:
            model.eval()
            model.save_pretrained(out, processor)
            model.train()
        if elapsed > cfg["max_seconds"]:
            print(f"stopping at step {step}: wall-clock budget of {cfg['max_seconds']} s reached", flush=True)
            break
    model.eval()
    model.save_pretrained(out, processor)
    summary = {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "samples": step * cfg["batch_size"],
               "parameters": n_params}

    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    logger.close()
    print(json.dumps(summary), flush=True)
    return out
