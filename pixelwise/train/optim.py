"""Parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from pixelwise.core.errors import ConfigError


@dataclass
class GroupSpec:
    """Parameters whose name matches `pattern` (a regex, `re.search`) train with `lr` (and `weight_decay`)."""

    pattern: str
    lr: float
    weight_decay: float | None = None


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    groups: list[GroupSpec] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "OptimConfig":
        d = dict(d)
        groups = [GroupSpec(**g) for g in d.pop("groups", [])]
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        try:
            return cls(groups=groups, **d)
        except TypeError as e:
            raise ConfigError(f"optim config: {e}") from None


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split trainable parameters into groups: the first matching `GroupSpec` wins, the rest use the defaults.

    Biases and norm weights (1-D tensors) get no weight decay, as is usual for transformers.
    """
    buckets: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    names: dict[tuple[float, float], list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr, wd = cfg.lr, cfg.weight_decay
        for g in cfg.groups:
            if re.search(g.pattern, name):
                lr = g.lr
                wd = cfg.weight_decay if g.weight_decay is None else g.weight_decay
                break
        if p.ndim < 2:
            wd = 0.0
        buckets.setdefault((lr, wd), []).append(p)
        names.setdefault((lr, wd), []).append(name)
    if not buckets:
        raise ConfigError("no trainable parameters: every parameter has requires_grad=False")
    return [{"params": ps, "lr": lr, "weight_decay": wd, "names": names[(lr, wd)]} for (lr, wd), ps in buckets.items()]


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg)
    for g in groups:
        g.pop("names")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                       min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to each group's lr, then cosine decay to `min_lr_ratio` x lr at `total_steps`."""
    if total_steps <= 0:
        raise ConfigError(f"total_steps must be positive, got {total_steps}")

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
