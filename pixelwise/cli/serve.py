"""`pixelwise serve` (HTTP API) and `pixelwise demo` (web demo): load one model, then serve it on loopback."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from pixelwise.core.errors import ConfigError


def _warn_if_public(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        typer.echo(f"warning: listening on {host}, reachable from other machines; the server has no authentication",
                   err=True)


def _load(model: str | None, device: str, dtype: str | None = None, threads: int | None = None):
    from pixelwise import pipeline  # lazy: `pixelwise --help` and other commands stay fast

    typer.echo(f"loading {model or 'the default model'} ...", err=True)
    return pipeline.load(model, device=device, dtype=dtype, threads=threads)


MODEL = typer.Option(None, "--model", help="Model folder or Hugging Face id (owner/name[@revision]); default: the "
                     "shipped unipixel-tiny model.")
DEVICE = typer.Option("auto", help="auto, cpu or cuda[:N].")
DTYPE = typer.Option(None, "--dtype", help="fp32, bf16 or fp16 (default: bf16 on GPU, fp32 on CPU).")
THREADS = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's, one per physical core).")


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; the default keeps the server on this machine."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = MODEL,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    media_root: Path = typer.Option(
        None, "--media-root", help="Folder whose files requests may name by 'path'. Without it requests must upload "
        "their media: no server-side path is opened."),
    no_paths: bool = typer.Option(False, "--no-paths", help="Refuse server-side paths even with --media-root."),
    max_upload_mb: float = typer.Option(64.0, help="Largest accepted upload, MiB (413 above)."),
    max_num_frames: int = typer.Option(64, help="Most frames a request may ask to sample (422 above)."),
    max_source_frames: int = typer.Option(10_000, help="Most frames a video may have (413 above)."),
    max_pixels: int = typer.Option(4096 * 4096, help="Most pixels per frame (413 above)."),
    max_queue: int = typer.Option(16, help="Requests that may wait for the model (503 + Retry-After above)."),
    timeout: float = typer.Option(120.0, help="Seconds a request may take, queue included (503 after)."),
) -> None:
    """Serve the HTTP API: POST /v1/segment, POST /v1/ask, GET /v1/model, GET /healthz, /openapi.json."""
    import uvicorn

    from pixelwise.serve.api import create_app  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.serve.limits import ServeLimits  # lazy: `pixelwise --help` and other commands stay fast

    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-num-frames", max_num_frames),
                        ("--max-source-frames", max_source_frames), ("--max-pixels", max_pixels),
                        ("--max-queue", max_queue), ("--timeout", timeout)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    root = None if no_paths else media_root
    if root is not None and not root.is_dir():
        raise ConfigError(f"--media-root {root}: not a folder")
    limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                         max_source_frames=max_source_frames, max_num_frames=max_num_frames,
                         max_queue=max_queue, timeout_s=timeout)
    _warn_if_public(host)
    app = create_app(_load(model, device, dtype, threads), limits, media_root=root)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("PIXELWISE_LOG_LEVEL", "info"),
                timeout_graceful_shutdown=5)


def demo(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; the default keeps the demo on this machine."),
    port: int = typer.Option(7860, help="TCP port."),
    model: str = MODEL,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    max_num_frames: int = typer.Option(32, help="Most frames the video tabs may sample."),
    share: bool = typer.Option(False, "--share", help="Also publish the demo through a temporary public Gradio link "
                               "(needs internet; anyone with the link can use it)."),
) -> None:
    """Serve the web demo (Gradio): image/video segmentation and region questions with point, box and mask prompts."""
    from pixelwise.data.pixelworld.demo import example_media  # lazy: `pixelwise --help` and other commands stay fast
    from pixelwise.serve.demo import launch  # lazy: `pixelwise --help` and other commands stay fast

    _warn_if_public(host)
    if share:
        typer.echo("warning: --share publishes the demo on a public gradio.live link; it has no authentication",
                   err=True)
    launch(_load(model, device, dtype, threads), host=host, port=port, max_num_frames=max_num_frames, share=share,
           examples=example_media())


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(demo)
