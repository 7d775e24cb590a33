"""`pixelwise eval`: score predictions (or a model) on a public benchmark, print a table, write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pixelwise.core.errors import PixelwiseError
from pixelwise.eval import native_benchmark


def _flatten(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flatten(v, f"{name} / ")
        else:
            rows.append((name, v))
    return rows


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['benchmark']} — {report['protocol']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, v in _flatten(report["metrics"]):
        table.add_row(name, "nan" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    extra = f"{report['samples']} samples, {report['missing']} without prediction"
    if "predicted" in report:
        extra += (f"; predicted {report['predicted']}, reused {report['skipped']} finished prediction(s); "
                  f"prediction {report['predict_seconds']:.1f} s, scoring {report['score_seconds']:.1f} s")
    else:
        extra += f"; scoring {report['seconds']:.1f} s"
    console.print(extra)


def eval_cmd(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name, e.g. mevis, revos, refcoco:testA."),
    data: Path = typer.Option(..., "--data", help="Dataset root in the benchmark's official layout."),
    pred: Path | None = typer.Option(None, "--pred", help="Predictions in the official layout (scored as they are)."),
    model: str | None = typer.Option(None, "--model", help="Model to run first (or 'oracle'); writes to --pred."),
    out: Path | None = typer.Option(None, "--out", help="Write the metrics (and per-sample scores) as JSON."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Scoring processes (default: up to 4)."),
    json_only: bool = typer.Option(False, "--json", help="Print the metrics JSON instead of a table."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N samples (a quick look)."),
    device: str = typer.Option("auto", "--device", help="Where --model runs: auto (cuda when available), cpu, "
                               "cuda, cuda:1 ..."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads for --model."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Samples --model answers together (UniPixel: "
                                   "one padded prefill and decoding loop; same predictions)."),
) -> None:
    """Score a benchmark with the official protocol: existing predictions (--pred) or a model (--model)."""
    from pixelwise.eval import runner  # lazy: `pixelwise --help` and other commands stay fast

    if model is None and pred is None:
        raise PixelwiseError("give --pred DIR (score predictions) or --model PATH (run a model)")
    native = native_benchmark(benchmark)  # a native PixelWorld folder, the model run here
    if native is not None:
        if model is None:
            raise PixelwiseError(f"{benchmark.partition(':')[0]} runs a model: give --model PATH")
        report = native.run(benchmark, data, model, limit)
        if out is not None:
            runner.write_report(report, out)
        if json_only:
            typer.echo(json.dumps({k: v for k, v in report.items() if k != "per_sample"}))
        else:
            _print_table(report)
        return
    bench = runner.get_benchmark(benchmark)
    shard = runner.shard_from_env()  # under torchrun: this rank's share of the samples
    json_only = json_only or not shard.is_main  # one report, from rank 0
    samples = None
    if bench.kind != "davis-unsupervised":  # scored from combined label maps, not per sample
        samples = runner.read_samples(bench, data, limit)
        if not json_only:
            first = " (the first ones: --limit)" if limit is not None else ""
            typer.echo(f"{bench.name}: {len(samples)} sample(s) in {data}{first}", err=True)
    if model is not None:
        pred_dir = pred or Path("outputs") / "predictions" / benchmark.replace(":", "_")
        report = runner.run(bench, data, runner.load_predictor(model, shard.device(device), threads), pred_dir,
                            workers, progress=not json_only, samples=samples, shard=shard, batch_size=batch_size)
        shard.close()
        if report is None:  # not rank 0: its predictions are written, rank 0 scored them
            return
    else:
        report = runner.score(bench, data, pred, workers=workers, progress=not json_only, samples=samples)
    if out is not None:
        runner.write_report(report, out)
    if json_only:
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "per_sample"}))
    else:
        _print_table(report)


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_cmd)
