"""Recipe configs, one loader for every family: defaults <- YAML file <- `--set key.sub=value` overrides.

Strict: a key the recipe's defaults do not have, or a value of another type than its default, is a `ConfigError`
that names the key (a typo must never fall back to a default silently). Sections listed as free (a model's own
size overrides, a loss dataclass, a DeepSpeed dict) are checked by their owners instead. `recipe` names the recipe
that runs the config (`pixelwise train --list`).
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pixelwise.core.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # YAML 1.1 reads 1e-3 (no dot) as a string


def merge(base: dict, over: dict | None) -> dict:
    """A copy of `base` with `over` merged in, dictionaries recursively."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def check_keys(cfg: dict, defaults: dict, source: str, free: Sequence[str] = (), where: str = "") -> None:
    """Unknown keys and values of the wrong type are errors naming the key."""
    for key, value in cfg.items():
        name = f"{where}.{key}" if where else key
        if key.startswith("_"):
            continue
        if name in free:  # its keys are checked by its owner; it is still a mapping
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{source}: {name} must be a mapping, got {value!r}")
            continue
        if key not in defaults:
            raise ConfigError(f"{source}: unknown key {name!r} (known: {', '.join(sorted(defaults))})")
        want = defaults[key]
        if isinstance(want, dict) and isinstance(value, dict):
            check_keys(value, want, source, free, name)
        elif isinstance(want, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        elif isinstance(want, (int, float)) and not isinstance(want, bool) and (
                not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
        elif isinstance(want, str) and value is not None and not isinstance(value, str):
            raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
        elif isinstance(want, (list, tuple)) and value is not None and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
        elif isinstance(want, dict) and value is not None and not isinstance(value, dict):
            raise ConfigError(f"{source}: {name} must be a mapping, got {value!r}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe YAML file as a mapping (typed errors naming the file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such recipe config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not a readable YAML file ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe config is a YAML mapping")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """"a.b.c=value" -> (["a", "b", "c"], YAML value)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: use KEY=VALUE, e.g. --set steps=1000")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    if isinstance(parsed, str) and _FLOAT.fullmatch(parsed):
        parsed = float(parsed)
    return key.split("."), parsed


def load_recipe_config(path: str | Path | None, defaults: dict[str, Any], overrides: Sequence[str] = (),
                       free: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, every layer checked against the defaults."""
    cfg = copy.deepcopy(defaults)
    if path is not None:
        data = read_yaml(path)
        check_keys(data, defaults, str(path), free)
        cfg = merge(cfg, data)
    for item in overrides:
        parts, value = parse_override(item)
        tree: dict = {}
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        check_keys(tree, defaults, f"--set {item}", free)
        cfg = merge(cfg, tree)
    return cfg


def recipe_cli(run: Callable[..., Path], description: str, argv: Sequence[str] | None = None) -> Path:
    """`python -m <recipe module> CONFIG [--set K=V ...] [--resume | --overwrite]`, the same as `pixelwise train`."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config", nargs="?", help="recipe YAML (default: the recipe's defaults alone)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ap.add_argument("--resume", action="store_true", help="continue the run exactly from its latest checkpoint")
    ap.add_argument("--overwrite", action="store_true", help="delete the run folder's old run and start anew")
    args = ap.parse_args(argv)
    return run(args.config, args.set, resume=args.resume, overwrite=args.overwrite)
