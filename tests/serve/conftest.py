"""Fixtures for the serving tests: free loopback ports, real server processes started and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE_CKPT = REPO / "tests" / "data" / "conformance" / "unipixel" / "checkpoint"
EXAMPLES = REPO / "examples"


def free_port() -> int:
    """A port the OS says is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def running_server(cmd: list[str], port: int, ready_path: str = "/healthz", startup_s: float = 120.0,
                   log_path: Path | None = None) -> Iterator[subprocess.Popen]:
    """Start `cmd`, wait (bounded) until `ready_path` answers 200, yield the process, then stop it by PID."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath, GRADIO_ANALYTICS_ENABLED="False", PIXELWISE_LOG_LEVEL="warning")
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 — closed in the finally below
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                tail = Path(log_path).read_text(errors="replace")[-3000:] if log_path else ""
                raise RuntimeError(f"server exited with {proc.returncode} before answering:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer {ready_path} within {startup_s:.0f} s")
            time.sleep(0.3)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if log_path:
            log.close()


def api_server_cmd(port: int, media_root: Path, **limits: object) -> list[str]:
    cmd = [sys.executable, str(REPO / "tests" / "serve" / "server_main.py"), "--model", str(CONFORMANCE_CKPT),
           "--port", str(port), "--media-root", str(media_root)]
    for key, value in limits.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


@pytest.fixture(scope="session")
def serve_media(tmp_path_factory) -> Path:
    """The media root of the test servers: PixelWorld examples plus hostile files."""
    import numpy as np
    from PIL import Image

    from pixelwise.core.media import save_video

    d = tmp_path_factory.mktemp("serve_media")
    for name in ("pixelworld_image.png", "pixelworld_clip.mp4"):
        (d / name).write_bytes((EXAMPLES / name).read_bytes())
    rng = np.random.default_rng(0)
    frames = np.full((60, 32, 32, 3), 100, np.uint8)
    for t in range(60):
        frames[t, 8:16, t % 24:t % 24 + 8] = (220, 30, 30)
    save_video(d / "long_clip.mp4", frames, fps=10)  # 60 frames: over the servers' 40-frame limit
    Image.fromarray(np.full((600, 600, 3), 90, np.uint8)).save(d / "wide.png")  # over 512x512 px, few bytes
    (d / "notes.txt").write_text("not an image\n" * 10)
    (d / "oversize.bin").write_bytes(rng.integers(0, 255, (2 << 20,), dtype=np.uint8).tobytes())  # 2 MiB
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.png").write_bytes((EXAMPLES / "pixelworld_image.png").read_bytes())
    (d / "escape.png").symlink_to(outside / "secret.png")
    return d
