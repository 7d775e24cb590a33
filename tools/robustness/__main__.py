"""`python -m tools.robustness report|corpus`: the project's hostile-input corpus and its report (docs/robustness.md).

Developer tooling, kept out of the library: it exercises the library, the CLI and the HTTP server with generated
hostile inputs and fault injection. Run it from a source checkout:

    python -m tools.robustness report -o docs/robustness.md
    python -m tools.robustness corpus runs/corpus       # the corpus alone, with its index cases.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

import pixelwise.cli  # noqa: F401  (the pixelwise command's help formatting)
from pixelwise.core.errors import PixelwiseError

app = typer.Typer(help="Hostile-input corpus and robustness report (developer tool).", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

@app.command("report")
def report(
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
    from tools.robustness.report import generate_report

    with stage_progress("robustness") as progress:
        summary = generate_report(out, seed=seed, scale=scale, workers=workers, timeout=timeout, keep=keep,
                                  progress=progress)
    typer.echo(f"wrote {out}: {summary['cases']} cases, {summary['runs']} runs, {summary['failures']} failures")
    if summary["failures"]:
        raise typer.Exit(1)


@app.command("corpus")
def corpus(
    out: Path = typer.Argument(..., help="Folder to write the corpus into."),
    seed: int = typer.Option(0, help="Corpus seed."),
    scale: int = typer.Option(1, min=1, help="Multiplies the number of random mutations."),
) -> None:
    """Write the hostile-input corpus (media, JSON, checkpoints) and its index `cases.json`."""
    from pixelwise.core.io import atomic_write_text
    from tools.robustness.corpus import build_corpus

    cases = build_corpus(out, seed=seed, scale=scale)
    index = [{"name": c.name, "group": c.group, "kind": c.kind, "path": str(c.path), "expect": c.expect} for c in cases]
    atomic_write_text(Path(out) / "cases.json", json.dumps(index, indent=1))
    typer.echo(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    try:
        app()
    except PixelwiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
