"""`pixelwise train CONFIG.yaml [--resume] [--set key=value ...]`: run a training recipe (one process, or each
process of a `torchrun` launch)."""

from __future__ import annotations

from pathlib import Path

import typer


def train_cmd(
    config: Path = typer.Argument(..., help="Recipe YAML (e.g. pixelwise/recipes/configs/unipixel_tiny.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint (exactly)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.sub=value (YAML value)."),
) -> None:
    """Train a model with a recipe config (YAML); see pixelwise/recipes/configs/ and docs/models/."""
    from pixelwise.core.errors import ConfigError  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.recipes.train_unipixel import load_config, train  # lazy: keeps startup fast

    if not config.is_file():
        raise ConfigError(f"{config}: no such recipe config")
    out = train(load_config(config, list(set_)), resume=resume)
    typer.echo(f"result: {out}")


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_cmd)
