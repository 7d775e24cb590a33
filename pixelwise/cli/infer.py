"""`pixelwise segment` and `pixelwise ask`: run a model on an image, a video file or a folder of frames."""

from __future__ import annotations

import inspect
import json
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from pixelwise.core.errors import PromptError
from pixelwise.core.prompts import MaskPrompt, VisualPrompt, parse_box, parse_point

PROGRESS_MIN_FRAMES = 17  # a progress bar for propagations longer than the default 16 sampled frames

MODEL = typer.Option(None, "--model", "-m", help="Checkpoint folder (default: the model shipped with pixelwise).")
FRAMES = typer.Option(16, "--frames", "-f", min=1, help="Frames the model reads from a video, spread uniformly.")
PROPAGATE = typer.Option("sampled", "--propagate",
                         help="Masks on the sampled frames ('sampled') or on every frame of the video ('all').")
OUT = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/<media name>).")
DEVICE = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
DTYPE = typer.Option(None, "--dtype", help="fp32, bf16 or fp16 (default: bf16 on GPU, fp32 on CPU).")
MAX_NEW_TOKENS = typer.Option(512, "--max-new-tokens", min=1, help="Longest answer, in tokens.")
THREADS = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's, one per physical core).")
POINT = typer.Option(None, "--point", help="Region as a point X,Y or X,Y@FRAME, e.g. 34,38 or 34,38@2 (repeatable).")
BOX = typer.Option(None, "--box", help="Region as a box X1,Y1,X2,Y2 or X1,Y1,X2,Y2@FRAME, e.g. 10,10,60,50 "
                   "(repeatable).")
MASK = typer.Option(None, "--mask", help="Region as a mask PNG or PNG@FRAME, non-zero = inside (repeatable).")
JSON = typer.Option(False, "--json", help="Print the result as JSON (answer, text, objects with RLE masks) on stdout.")


def segment(
    media: Path = typer.Argument(..., help="Image, video file or folder of frames."),
    text: str = typer.Argument(..., help='What to segment: a phrase ("the red car") or a sentence / question.'),
    point: list[str] = POINT,
    box: list[str] = BOX,
    mask: list[str] = MASK,
    model: str = MODEL,
    frames: int = FRAMES,
    propagate: str = PROPAGATE,
    out: Path = OUT,
    device: str = DEVICE,
    dtype: str = DTYPE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    threads: int = THREADS,
    json_out: bool = JSON,
) -> None:
    """Segment what a text describes; write the masks, their overlay and the answer.

    Points, boxes or masks (--point/--box/--mask) segment those objects too ("segment this object" with a click);
    they come back first, as objects [0], [1], ... FRAME (default 0) counts the frames the model reads.
    """
    regions = parse_regions(point or [], box or [], mask or [])
    for k, r in enumerate(regions):
        _say(f"region [{k}]: {_describe(r)}", json_out)
    pipe, load_seconds = _load(model, device, dtype, threads)
    # prompts for a family whose segment() takes none: a prompted question (which says if it takes prompts at all)
    method, extra = pipe.segment, {}
    if regions:
        takes = "regions" in inspect.signature(pipe.segment).parameters
        method, extra = (pipe.segment, {"regions": regions}) if takes else (pipe.ask, {"regions": regions})
    with _progress_bar() as progress:
        result = method(str(media), text, num_frames=frames, propagate=propagate,
                        max_new_tokens=max_new_tokens, progress=progress, **extra)
    _report(result, _out_dir(out, media), load_seconds, json_out)


def ask(
    media: Path = typer.Argument(..., help="Image, video file or folder of frames."),
    question: str = typer.Argument(..., help="The question; name the regions [0], [1], ..."),
    point: list[str] = POINT,
    box: list[str] = BOX,
    mask: list[str] = MASK,
    option: list[str] = typer.Option(None, "--option", help="An answer option (repeatable): multiple choice."),
    model: str = MODEL,
    frames: int = FRAMES,
    propagate: str = PROPAGATE,
    out: Path = OUT,
    device: str = DEVICE,
    dtype: str = DTYPE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    threads: int = THREADS,
    json_out: bool = JSON,
) -> None:
    """Ask about an image or a video, optionally about regions given as points, boxes or masks.

    Regions are numbered in the order --point, --box, --mask (each in the order given) and are named [0], [1], ...
    in the question. FRAME (default 0) counts the frames the model reads (--frames of them, spread uniformly over
    the video; `pixelwise info` tells how many a video has), so @3 is the 4th frame read.
    """
    regions = parse_regions(point or [], box or [], mask or [])
    for k, r in enumerate(regions):
        _say(f"region [{k}]: {_describe(r)}", json_out)
    pipe, load_seconds = _load(model, device, dtype, threads)
    with _progress_bar() as progress:
        result = pipe.ask(str(media), question, regions, options=option or None, num_frames=frames,
                          propagate=propagate, max_new_tokens=max_new_tokens, progress=progress)
    _report(result, _out_dir(out, media), load_seconds, json_out)


def parse_mask(text: str) -> MaskPrompt:
    """`PNG` or `PNG@FRAME` -> a mask prompt (any non-zero pixel is inside)."""
    from pixelwise.core.masks import load_mask_png  # lazy: `pixelwise --help` and other commands stay fast

    path, at, frame = text.rpartition("@")
    if not at or not frame.isdigit():
        path, frame = text, "0"
    return MaskPrompt(load_mask_png(path), int(frame))


def parse_regions(points: list[str], boxes: list[str], masks: list[str]) -> list[VisualPrompt]:
    regions: list[VisualPrompt] = [parse_point(p) for p in points]
    regions += [parse_box(b) for b in boxes]
    regions += [parse_mask(m) for m in masks]
    if not regions and (points or boxes or masks):
        raise PromptError("no region could be read")
    return regions


def _describe(r: VisualPrompt) -> str:
    if isinstance(r, MaskPrompt):
        return f"mask of {int(r.mask.sum())} px on frame {r.frame}"
    if hasattr(r, "xyxy"):
        return "box {:g},{:g},{:g},{:g} on frame {}".format(*r.xyxy, r.frame)
    return f"point {r.x:g},{r.y:g} on frame {r.frame}"


def _load(model: str | None, device: str | None, dtype: str | None, threads: int | None = None):
    import pixelwise  # lazy: `pixelwise --help` and other commands stay fast

    t0 = time.perf_counter()
    pipe = pixelwise.load(model, device=device, dtype=dtype, threads=threads)
    return pipe, time.perf_counter() - t0


@contextmanager
def _progress_bar(label: str = "propagating masks", min_total: int = PROGRESS_MIN_FRAMES):
    """A progress callback (done, total) drawing a bar on stderr: frames of a long propagation, or queries."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if total < min_total:
            return
        if task is None:
            bar.start()
            task = bar.add_task("propagate", total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def _out_dir(out: Path | None, media: Path) -> Path:
    return out if out is not None else Path("outputs") / (media.stem or "media")


def _say(line: str, json_out: bool) -> None:
    """A line of the human report: on stdout, or on stderr when stdout carries the JSON."""
    typer.echo(line, err=json_out)


def _report(result, out: Path, load_seconds: float, json_out: bool = False) -> None:
    written = result.save(out)
    _say(f"answer: {result.text}", json_out)
    for o in result.objects:
        shown = int(o.masks.reshape(o.masks.shape[0], -1).any(1).sum())
        score = "" if o.score is None else f", score {o.score:.2f}"
        _say(f"object [{o.id}]: mask on {shown}/{result.num_frames} frames{score}", json_out)
    files = [str(written["json"])]
    if "masks" in written:
        files.append(f"{written['masks']}/ ({sum(1 for _ in Path(written['masks']).glob('*.png'))} PNGs)")
    if "overlay" in written:
        files.append(str(written["overlay"]))
    _say("wrote: " + ", ".join(files), json_out)
    times = {"load": load_seconds, **result.timings}
    _say("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), json_out)
    if json_out:
        typer.echo(json.dumps(result.to_json()))


def batch(
    manifest: Path = typer.Argument(..., help="JSONL, one query a line: {\"media\", \"text\", \"task\": segment|ask, "
                                    "\"prompts\", \"options\", \"id\"} (docs/serving.md has the prompt format)."),
    out: Path = typer.Option(Path("outputs/batch"), "--out", "-o", help="Folder for results.jsonl."),
    model: str = MODEL,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Queries answered together (UniPixel: one padded "
                                   "prefill and decoding loop; same results)."),
) -> None:
    """Answer every query of a manifest into OUT/results.jsonl (resumable; under torchrun each rank takes its share).

    Each line of results.jsonl is a result JSON (answer, text, objects with RLE masks) with the query's id, or the
    query's error; a rerun skips the ids already answered.
    """
    from pixelwise.eval.runner import shard_from_env  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.pipeline import manifest as M  # lazy: `pixelwise --help` and other commands stay fast

    M.read_manifest(manifest)  # a malformed manifest fails here, before the model loads
    shard = shard_from_env()  # under torchrun: this rank's share, on its own GPU when there is one
    pipe, _ = _load(model, shard.device(device), dtype, threads)
    with _progress_bar("answering", min_total=1) as progress:
        summary = M.run_manifest(pipe, manifest, out, shard.rank, shard.world_size, progress, batch_size)
    shard.barrier()  # every rank's part is written
    if shard.is_main:
        merged = M.merge_results(manifest, out)
        typer.echo(f"{summary['queries']} queries: {summary['answered']} answered here ({summary['failed']} with an "
                   f"error), {summary['skipped']} already done; results: {merged}")
    shard.close()


def register(app: typer.Typer) -> None:
    app.command()(segment)
    app.command()(ask)
    app.command()(batch)
