"""`pixelwise conformance DIR`: run a model family's conformance vectors and print a per-case table."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import typer

from pixelwise.core.errors import FormatError

# model_type of the vectors' checkpoint -> module with run_conformance(dir, only) and render_table(report, verbose).
RUNNERS = {"pixel_qwen2_5_vl": "pixelwise.models.unipixel.conformance"}


def _runner_for(directory: Path):
    spec_file = directory / "cases.json"
    if not spec_file.is_file():
        raise FormatError(f"{directory}: no cases.json (not a conformance vectors folder)")
    try:
        spec = json.loads(spec_file.read_text())
        config = json.loads((directory / spec.get("checkpoint", "checkpoint") / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise FormatError(f"{directory}: cannot read cases.json / checkpoint/config.json ({e})") from e
    model_type = config.get("model_type")
    if model_type not in RUNNERS:
        raise FormatError(f"{directory}: no conformance runner for model_type {model_type!r}")
    return importlib.import_module(RUNNERS[model_type])


def conformance(
    directory: Path = typer.Argument(..., help="Vectors folder with cases.json, media.safetensors, checkpoint/."),
    case: list[str] = typer.Option(None, "--case", "-c", help="Run only this case (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every compared tensor."),
    json_out: Path = typer.Option(None, "--json", help="Also write the full report as JSON."),
    threads: int = typer.Option(1, help="torch CPU threads (1 = the setting the vectors were made with)."),
) -> None:
    """Check pixelwise against vectors made by an official implementation; exit code 0 only if every case passes."""
    import torch

    from pixelwise.core.io import atomic_write_text  # lazy: `pixelwise --help` and other commands stay fast

    runner = _runner_for(directory)
    torch.set_num_threads(max(1, threads))
    report = runner.run_conformance(directory, only=list(case) if case else None)
    runner.render_table(report, verbose=verbose)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_json(), indent=2) + "\n")
    raise typer.Exit(0 if report.passed else 1)


def register(app: typer.Typer) -> None:
    app.command()(conformance)
