"""`pixelwise conformance DIR`: run a model family's conformance vectors and print a per-case table."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def conformance(
    directory: Path = typer.Argument(..., help="Vectors folder with cases.json, media.safetensors, checkpoint/."),
    case: list[str] = typer.Option(None, "--case", "-c", help="Run only this case (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every compared tensor."),
    json_out: Path = typer.Option(None, "--json", help="Also write the full report as JSON."),
    threads: int = typer.Option(1, help="torch CPU threads (1 = the setting the vectors were made with)."),
) -> None:
    """Check pixelwise against vectors made by an official implementation; exit code 0 only if every case passes."""
    import torch

    from pixelwise.core.io import atomic_write_text
    from pixelwise.models.unipixel.conformance import render_table, run_conformance

    torch.set_num_threads(max(1, threads))
    report = run_conformance(directory, only=list(case) if case else None)
    render_table(report, verbose=verbose)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_json(), indent=2) + "\n")
    raise typer.Exit(0 if report.passed else 1)


def register(app: typer.Typer) -> None:
    app.command()(conformance)
