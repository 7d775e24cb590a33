"""`pixelwise pixelworld generate|show`: build PixelWorld splits and look at their samples."""

from __future__ import annotations

from pathlib import Path

import typer

FORMATS = ("native", "refcoco", "mevis", "revos", "muse", "videorefer", "reasonseg")

pixelworld_app = typer.Typer(help="PixelWorld: the procedural multi-task benchmark and training set.",
                             no_args_is_help=True)


@pixelworld_app.command()
def generate(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (native files; exports go in OUT/<format>)."),
    split: str = typer.Option("train", help="train, val, test, holdout or long."),
    num: int = typer.Option(100, help="Number of samples."),
    seed: int = typer.Option(0, help="Seed; (seed, split, num) gives byte-identical output."),
    tasks: list[str] | None = typer.Option(None, "--tasks", help="Task(s) to generate (repeat or comma-separate)."),
    video: bool = typer.Option(False, "--video", help="Video clips instead of images (always on for --split long)."),
    fmt: str = typer.Option("native", "--format", help="Also export to: " + ", ".join(FORMATS[1:]) + "."),
    resolution: int = typer.Option(128, help="Frame side in pixels."),
    frames: int | None = typer.Option(None, help="Frames per clip (default 32; 320 for the long split)."),
    video_format: str = typer.Option("mp4", help="mp4 or png (a folder of lossless PNG frames per clip)."),
    workers: int | None = typer.Option(None, help="Worker processes (output does not depend on it)."),
) -> None:
    """Generate a PixelWorld split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pixelwise.core.errors import ConfigError  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.data.pixelworld import export  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.data.pixelworld.generate import GenConfig  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.data.pixelworld.generate import generate as run  # lazy: keeps startup fast

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    task_list = None
    if tasks:
        task_list = tuple(t.strip() for item in tasks for t in item.split(",") if t.strip())
    cfg = GenConfig(split=split, num=num, seed=seed, tasks=task_list, video=video, resolution=resolution,
                    num_frames=frames, video_format=video_format)
    cfg.validate()
    with Progress(TextColumn("[bold]PixelWorld {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        tid = bar.add_task(split, total=num)
        path = run(out, cfg, workers=workers, progress=lambda n: bar.advance(tid, n))
    typer.echo(f"wrote {num} samples to {path}")
    if fmt != "native":
        dest, taken, left = export.export_counted(out, fmt)
        typer.echo(f"exported {taken} of {num} samples to the {fmt} layout in {dest} (it takes {export.TAKES[fmt]})")
        if left:
            typer.echo("  not exported (other tasks): " + ", ".join(f"{n} {kind}" for kind, n in left.items()))


@pixelworld_app.command()
def show(
    root: Path = typer.Argument(..., help="A folder written by `pixelworld generate`."),
    index: int = typer.Option(0, "--index", "-i", help="Sample index (line of samples.jsonl)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .png (images) or .gif (videos)."),
    strip: int = typer.Option(0, help="Instead of a GIF, a PNG of this many evenly spaced frames side by side."),
) -> None:
    """Render one sample with its question, answer, masks and prompts."""
    from pixelwise.data.pixelworld.show import show as run  # lazy: `pixelwise --help` and other commands stay fast

    typer.echo(f"wrote {run(root, index, out, strip=strip)}")


def register(app: typer.Typer) -> None:
    app.add_typer(pixelworld_app, name="pixelworld")
