"""The training recipes `pixelwise train` runs, by the `recipe:` key of a config.

Each recipe module has `run(config, overrides, resume=False, overwrite=False) -> Path` and its YAML configs in a
`configs/` folder beside it. Modules are imported when their recipe runs (each imports its whole model family).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from pixelwise.core.errors import ConfigError
from pixelwise.train.config import read_yaml

HERE = Path(__file__).resolve().parent

# name -> (module, what it trains, folder of its configs)
RECIPES: dict[str, tuple[str, str, Path]] = {
    "unipixel": ("pixelwise.recipes.train_unipixel", "UniPixel (Qwen2.5-VL + SAM2 + memory): stages, LoRA, FSDP",
                 HERE / "configs"),
    "pixellm": ("pixelwise.recipes.pixellm.train_pixellm", "PixelLM: codebook tokens + light pixel decoder",
                HERE / "pixellm" / "configs"),
    "ufo": ("pixelwise.recipes.ufo.train_ufo", "UFO: <MASK> retrieval, boxes as text, detection",
            HERE / "ufo" / "configs"),
    "pixelsail": ("pixelwise.recipes.pixelsail.train_pixelsail", "Pixel-SAIL: one transformer + SAM2 distillation",
                  HERE / "pixelsail" / "configs"),
    "vitron": ("pixelwise.recipes.vitron.train_vitron", "VITRON: router + [SIG] segmentation back-end",
               HERE / "vitron" / "configs"),
}
DEFAULT_RECIPE = "unipixel"  # a config without `recipe:` (written before the key existed)


def recipe_of(config: str | Path) -> str:
    """The recipe a config names (`recipe:`; absent: unipixel)."""
    name = read_yaml(config).get("recipe", DEFAULT_RECIPE)
    if name not in RECIPES:
        raise ConfigError(f"{config}: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return name


def run_recipe(config: str | Path, overrides: Sequence[str] = (), resume: bool = False,
               overwrite: bool = False) -> Path:
    module = importlib.import_module(RECIPES[recipe_of(config)][0])
    return module.run(config, list(overrides), resume=resume, overwrite=overwrite)


def listing() -> list[tuple[str, str, list[Path]]]:
    """(name, description, shipped configs) of every recipe."""
    return [(name, desc, sorted(folder.glob("*.yaml"))) for name, (_, desc, folder) in RECIPES.items()]
