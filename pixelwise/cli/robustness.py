"""`pixelwise robustness check-checkpoint`: validate a checkpoint (yours, or one you downloaded) as loading would.

The project's hostile-input corpus and its report are developer tools, not part of the library: `python -m
tools.robustness report -o docs/robustness.md` from a source checkout (tools/robustness/).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

robustness = typer.Typer(help="Checkpoint safety check (config, safetensors headers, finite float weights, no pickle).",
                         no_args_is_help=True)


@robustness.command("check-checkpoint")
def check_checkpoint_cmd(
    path: Path = typer.Argument(..., help="A checkpoint folder (config.json + weights) or one weights file."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Accept pickle-based weights you trust (loaded with weights_only=True)."),
) -> None:
    """Validate a checkpoint as loading would (config values, safetensors headers, no pickle) without a model."""
    from pixelwise.pipeline.check import check_checkpoint  # lazy: `pixelwise --help` and other commands stay fast

    typer.echo(json.dumps(check_checkpoint(path, allow_pickle=allow_pickle)))


def register(app: typer.Typer) -> None:
    app.add_typer(robustness, name="robustness")
