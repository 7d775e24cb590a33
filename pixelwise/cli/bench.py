"""`pixelwise bench`: the benchmark suite (latency, stages, multi-object and clip-length scaling, throughput,
training); `pixelwise bench compare`: the five model families side by side (docs/comparison.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pixelwise.core.errors import ConfigError

OUT = typer.Option(Path("outputs/bench.json"), "--out", "-o", help="Write the report here (JSON).")
WORKDIR = typer.Option(None, help="Scratch folder for generated clips (default: a temp folder).")


def bench(
    ctx: typer.Context,
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
    batch_sizes: str = typer.Option("1,4,8", "--batch-sizes", help="run_batch sizes for the throughput case."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Answer length cap of the image/video queries."),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's)."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option(None, "--dtype"),
    out: Path = OUT,
    workdir: Path = WORKDIR,
) -> None:
    """Measure pixelwise (and its reference mode) on this machine; write a JSON report and print a summary."""
    if ctx.invoked_subcommand is not None:
        return
    from pixelwise.bench import suite  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.bench.report import summary_lines  # lazy: `pixelwise --help` and other commands stay fast

    try:
        cfg = suite.BenchConfig(model=model, shapes=shapes, device=device, dtype=dtype, repeats=repeats,
                                reference=reference, max_new_tokens=max_new_tokens, threads=threads,
                                lengths=tuple(int(v) for v in lengths.split(",") if v),
                                objects=tuple(int(v) for v in objects.split(",") if v),
                                batch_sizes=tuple(int(v) for v in batch_sizes.split(",") if v))
    except ValueError as e:
        raise ConfigError(f"--lengths / --objects / --batch-sizes: comma-separated integers ({e})") from None
    if any(b < 1 for b in cfg.batch_sizes):
        raise ConfigError(f"--batch-sizes: each must be >= 1, got {batch_sizes}")
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


def compare(
    num: int = typer.Option(24, "--num", min=1, help="PixelWorld samples generated per task row and split."),
    splits: str = typer.Option("test,holdout", help="Comma-separated PixelWorld splits."),
    family: list[str] = typer.Option(None, "--family", help="Only these families (repeatable; default: all five)."),
    row: list[str] = typer.Option(None, "--row", help="Only these task rows (repeatable; default: all)."),
    seed: int = typer.Option(0, help="PixelWorld generation seed."),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's)."),
    workdir: Path = typer.Option(Path("outputs/compare"), help="Generated data and predictions."),
    out: Path = typer.Option(Path("outputs/comparison.md"), "--out", "-o",
                             help="Markdown tables written here (the project's own: docs/comparison.md)."),
    json_out: Path = typer.Option(Path("outputs/compare.json"), "--json",
                                  help="Full JSON report (per-task metrics, reasons for '-')."),
    update: bool = typer.Option(False, "--update", help="Rescore only the --family columns and keep the others of "
                                "the existing --json report (same --num, --seed, --splits and rows)."),
) -> None:
    """Score every family's committed checkpoint on the same PixelWorld rows; write docs/comparison.md tables."""
    import shlex
    import sys

    import torch

    from pixelwise.bench import compare as C  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.core.io import atomic_write_text  # lazy: `pixelwise --help` and other commands stay fast

    bad = [f for f in family or [] if f not in C.FAMILIES]
    if bad:
        raise ConfigError(f"--family {bad[0]!r}: choose from {', '.join(C.FAMILIES)}")
    names = [r.name for r in C.ROWS]
    bad = [r for r in row or [] if r not in names]
    if bad:
        raise ConfigError(f"--row {bad[0]!r}: choose from {', '.join(names)}")
    previous = None
    if update:
        if not family:
            raise ConfigError("--update rescores the families named by --family: name at least one")
        if not json_out.is_file():
            raise ConfigError(f"--update: no existing report at {json_out} (--json); run every family first")
        try:
            previous = json.loads(json_out.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--update: cannot read the existing report {json_out}: {e}") from None
    if threads:
        torch.set_num_threads(threads)
    cfg = C.CompareConfig(splits=tuple(s for s in splits.split(",") if s), num=num, seed=seed,
                          families=tuple(family) if family else tuple(C.FAMILIES),
                          rows=tuple(row) if row else tuple(names), workdir=workdir)
    if previous is not None:  # before an hour of scoring, not after
        C.check_same_data(previous, list(cfg.splits), cfg.num, cfg.seed, list(cfg.rows))
    from pixelwise.cli.progress import stage_progress  # lazy: `pixelwise --help` and other commands stay fast

    with stage_progress("compare") as progress:
        report = C.run(cfg, log=lambda m: typer.echo(m, err=True), progress=progress)
    report["command"] = ("pixelwise bench compare " + " ".join(shlex.quote(a) for a in sys.argv[3:])).strip()
    if previous is not None:
        report = C.merge(previous, report)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_out, json.dumps(report, indent=1))
    md = C.markdown(report, report.get("command") or "pixelwise bench compare")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, C.with_notes(md, out))
    typer.echo(md)
    typer.echo(f"report: {json_out}; tables: {out}")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The benchmark suite (its options, no command), or `compare`: the five families side by "
                        "side on PixelWorld.", invoke_without_command=True, no_args_is_help=False)
    group.callback()(bench)
    group.command("compare")(compare)
    app.add_typer(group, name="bench")
