"""`pixelwise robustness`: the hostile-input corpus, the robustness report, and a checkpoint safety check."""

from __future__ import annotations

import json
from pathlib import Path

import typer

robustness = typer.Typer(help="Hostile-input corpus, robustness report, checkpoint safety check.", no_args_is_help=True)


@robustness.command("report")
def report_cmd(
    out: Path = typer.Option(Path("outputs/robustness.md"), "--out", "-o",
                             help="Markdown report to write (the project's own: docs/robustness.md)."),
    seed: int = typer.Option(0, help="Corpus seed (same seed, same corpus)."),
    scale: int = typer.Option(1, min=1, help="Multiplies the number of random mutations."),
    workers: int = typer.Option(2, min=1, help="CLI subprocesses at a time."),
    timeout: float = typer.Option(60.0, help="Seconds one CLI case may take before it counts as a hang."),
    keep: Path | None = typer.Option(None, "--keep", help="Keep the generated corpus in this folder."),
) -> None:
    """Generate the corpus, run it through the readers and the CLI, write the report; exit 1 on any failure."""
    from pixelwise.cli.progress import stage_progress
    from pixelwise.reliability.report import generate_report

    with stage_progress("robustness") as progress:
        summary = generate_report(out, seed=seed, scale=scale, workers=workers, timeout=timeout, keep=keep,
                                  progress=progress)
    typer.echo(f"wrote {out}: {summary['cases']} cases, {summary['runs']} runs, {summary['failures']} failures")
    if summary["failures"]:
        raise typer.Exit(1)


@robustness.command("corpus")
def corpus_cmd(
    out: Path = typer.Argument(..., help="Folder to write the corpus into."),
    seed: int = typer.Option(0, help="Corpus seed."),
    scale: int = typer.Option(1, min=1, help="Multiplies the number of random mutations."),
) -> None:
    """Write the hostile-input corpus (media, JSON, checkpoints) and its index `cases.json`."""
    from pixelwise.core.io import atomic_write_text
    from pixelwise.reliability.corpus import build_corpus

    cases = build_corpus(out, seed=seed, scale=scale)
    index = [{"name": c.name, "group": c.group, "kind": c.kind, "path": str(c.path), "expect": c.expect} for c in cases]
    atomic_write_text(Path(out) / "cases.json", json.dumps(index, indent=1))
    typer.echo(f"wrote {len(cases)} cases to {out}")


@robustness.command("check-checkpoint")
def check_checkpoint_cmd(
    path: Path = typer.Argument(..., help="A checkpoint folder (config.json + weights) or one weights file."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Accept pickle-based weights you trust (loaded with weights_only=True)."),
) -> None:
    """Validate a checkpoint as loading would (config values, safetensors headers, no pickle) without a model."""
    from pixelwise.reliability.probes import check_checkpoint

    typer.echo(json.dumps(check_checkpoint(path, allow_pickle=allow_pickle)))


def register(app: typer.Typer) -> None:
    app.add_typer(robustness, name="robustness")
