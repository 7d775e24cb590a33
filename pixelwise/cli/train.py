"""`pixelwise train CONFIG.yaml [--resume | --overwrite] [--set key=value ...]`: run the training recipe the config
names (`recipe:`), in one process or in each process of a `torchrun` launch; `pixelwise train --list` shows them."""

from __future__ import annotations

from pathlib import Path

import typer


def train_cmd(
    config: Path = typer.Argument(None, help="Recipe YAML (e.g. pixelwise/recipes/configs/unipixel_tiny.yaml).",
                                  show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run exactly from its latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the run folder's old run and start anew."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.sub=value (YAML value)."),
    list_: bool = typer.Option(False, "--list", help="List the recipes and their shipped configs, then exit."),
) -> None:
    """Train a model with a recipe config (YAML); the config's `recipe:` picks the family's recipe."""
    from pixelwise.core.errors import ConfigError  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.recipes import registry  # lazy: keeps startup fast

    if list_:
        root = Path.cwd()
        for name, desc, configs in registry.listing():
            typer.echo(f"{name:10s} {desc}")
            for c in configs:
                typer.echo(f"{'':10s}   {c.relative_to(root) if c.is_relative_to(root) else c}")
        return
    if config is None:
        raise ConfigError("give a recipe config (pixelwise train CONFIG.yaml), or --list to see them")
    out = registry.run_recipe(config, list(set_), resume=resume, overwrite=overwrite)
    typer.echo(f"result: {out}")


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_cmd)
