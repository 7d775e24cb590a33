"""atomic_write under SIGKILL: the target is either the old or the new content, never half; leftovers are swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, time
from pixelwise.core.io import atomic_write
with atomic_write(sys.argv[1], "wb") as f:
    f.write(b"new-but-half")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_sigkill_mid_write_keeps_old_content_and_next_process_sweeps_the_temp(tmp_path):
    target = tmp_path / "latest"
    target.write_text("old")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    assert p.stdout.readline().strip() == b"writing"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert target.read_text() == "old"  # never half-written
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(leftovers) == 1 and f".{p.pid}." in leftovers[0]
    code = "import sys; from pixelwise.core.io import atomic_write_text; atomic_write_text(sys.argv[1], 'next')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "other")], env=env, check=True, timeout=60)
    assert sorted(os.listdir(tmp_path)) == ["latest", "other"]


def test_live_writers_temp_is_not_swept(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "a")], stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline().strip() == b"writing"
        code = "import sys; from pixelwise.core.io import atomic_write_text; atomic_write_text(sys.argv[1], 'b')"
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], env=env, check=True, timeout=60)
        assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))  # the live writer's file is untouched
    finally:
        p.kill()
        p.wait()
