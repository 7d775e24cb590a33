"""`pixelwise bench`: the benchmark suite (latency, stages, multi-object and clip-length scaling, throughput)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pixelwise.core.errors import ConfigError

OUT = typer.Option(Path("bench.json"), "--out", "-o", help="Write the report here (JSON).")
WORKDIR = typer.Option(None, help="Scratch folder for generated clips (default: a temp folder).")


def bench(
    model: str = typer.Option(None, "--model", "-m", help="Checkpoint folder (default: the model shipped with pixelwise)."),
    shapes: str = typer.Option(None, "--shapes", help="Random weights of these shapes instead (3b: UniPixel-3B); "
                               "the tokenizer comes from --model. Slow on CPU."),
    case: list[str] = typer.Option(None, "--case", "-c", help="Run only this case (repeatable): image, video, stages, "
                                   "objects, length, throughput, train."),
    repeats: int = typer.Option(5, "--repeats", "-n", min=1, help="Timed runs per case (after one warm-up)."),
    reference: bool = typer.Option(True, "--reference/--no-reference",
                                   help="Also run the reference mode (straightforward SAM2 use) side by side."),
    lengths: str = typer.Option("16,100,1000", help="Clip lengths (frames) for the length case."),
    objects: str = typer.Option("1,3,8", help="Objects per query for the objects case."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Answer length cap of the image/video queries."),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's)."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option(None, "--dtype"),
    out: Path = OUT,
    workdir: Path = WORKDIR,
) -> None:
    """Measure pixelwise (and its reference mode) on this machine; write a JSON report and print a summary."""
    from pixelwise.bench import suite
    from pixelwise.bench.report import summary_lines

    try:
        cfg = suite.BenchConfig(model=model, shapes=shapes, device=device, dtype=dtype, repeats=repeats,
                                reference=reference, max_new_tokens=max_new_tokens, threads=threads,
                                lengths=tuple(int(v) for v in lengths.split(",") if v),
                                objects=tuple(int(v) for v in objects.split(",") if v))
    except ValueError as e:
        raise ConfigError(f"--lengths / --objects: comma-separated integers ({e})") from None
    if workdir is not None:
        cfg.workdir = workdir
    cases = tuple(case) if case else suite.DEFAULT_CASES
    try:
        report = suite.run(cfg, cases, log=lambda m: typer.echo(m, err=True))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    for line in summary_lines(report):
        typer.echo(line)
    typer.echo(f"report: {out}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
