"""`pixelwise info` and `pixelwise overlay`: look at media and at masks."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pixelwise.core import media as media_io
from pixelwise.core import viz
from pixelwise.core.errors import FormatError, MediaError
from pixelwise.core.export import overlay_frames, overlay_result
from pixelwise.core.results import Result


def info(media: Path = typer.Argument(..., help="Image, video file or folder of frames.")) -> None:
    """Show frames, fps and size of an image, a video or a folder of frames."""
    src = media_io.open_media(media)
    kind = {media_io.ImageSource: "image", media_io.VideoSource: "video", media_io.FrameFolder: "frame folder"}[type(src)]
    h, w = src.size
    data = {"path": str(media), "kind": kind, "frames": src.num_frames, "fps": src.fps, "width": w, "height": h}
    typer.echo(json.dumps(data))


def overlay(
    media: Path = typer.Argument(..., help="The media the masks belong to."),
    masks: Path = typer.Argument(..., help="A result JSON (as written by `segment`/`ask`, masks as COCO RLE)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .png for one frame, .gif/.mp4 for clips."),
    fps: float = typer.Option(4.0, help="Frame rate of an animated output."),
) -> None:
    """Draw the masks of a result JSON on its media."""
    result = Result.load(masks)  # masks stay RLE: nothing is allocated for them yet
    src = media_io.open_media(media)  # the header only
    if max(result.frame_indices) >= src.num_frames:
        raise FormatError(
            f"{masks}: refers to frame {max(result.frame_indices)}, but {media} has {src.num_frames} frame(s)"
        )
    if tuple(src.size) != tuple(result.size):
        raise FormatError(f"{masks}: masks are {result.size[1]}x{result.size[0]}, but {media} is {src.size[1]}x{src.size[0]}")
    suffix = out.suffix.lower()
    if result.num_frames > 1 and suffix not in (".gif", ".mp4", ".webm"):
        raise MediaError(f"--out {out}: a {result.num_frames}-frame result needs a .gif, .mp4 or .webm file")
    if suffix not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".mp4", ".webm"):
        raise MediaError(f"--out {out}: unsupported extension (use .png, .jpg, .gif, .mp4 or .webm)")
    # one frame decoded and drawn at a time; a long result is previewed on at most OVERLAY_MAX_FRAMES frames
    shown = overlay_frames(result.num_frames)
    by_source = {result.frame_indices[t]: t for t in shown}
    frames = [overlay_result([frame], result, [by_source[i]])[0]
              for i, frame in src.iter_frames(sorted(by_source))]
    if len(frames) == 1 and suffix not in (".gif", ".mp4", ".webm"):
        viz.save_image(out, frames[0])
    else:
        viz.save_animation(out, frames, fps=fps)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command()(info)
    app.command()(overlay)
