"""The CLI as a user runs it: a real subprocess, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest

from pixelwise.core.results import Result, SegObject
from tests.conftest import make_frames


def run(*args):
    return subprocess.run([sys.executable, "-m", "pixelwise", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "info" in r.stdout and "overlay" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("pixelwise ")


@pytest.mark.parametrize("name, frames", [("image.png", 1), ("clip.mp4", 12), ("frames", 12)])
def test_info(media_dir, name, frames):
    r = run("info", media_dir / name)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["frames"] == frames and (data["width"], data["height"]) == (64, 48)


@pytest.mark.parametrize("name", ["corrupt.jpg", "empty.mp4", "text.mp4", "huge.png", "empty_folder", "nope.png"])
def test_bad_media_exit_2_one_line(media_dir, name):
    r = run("info", media_dir / name)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name, out", [("image.png", "o.png"), ("clip.mp4", "o.gif"), ("frames", "o.mp4")])
def test_overlay(media_dir, tmp_path, name, out):
    frames = make_frames()
    n = 1 if name == "image.png" else 12
    masks = frames[:n, ..., 0] > 200
    res = Result("the red square [0]", [SegObject(0, masks)], list(range(n)), masks.shape[1:])
    (tmp_path / "r.json").write_text(json.dumps(res.to_json()))
    r = run("overlay", media_dir / name, tmp_path / "r.json", "--out", tmp_path / out)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / out).stat().st_size > 0


def test_overlay_mismatch_is_a_clear_error(media_dir, tmp_path):
    res = Result("x", [SegObject(0, make_frames(1)[..., 0] > 200)], [40], (48, 64))
    (tmp_path / "r.json").write_text(json.dumps(res.to_json()))
    r = run("overlay", media_dir / "clip.mp4", tmp_path / "r.json", "--out", tmp_path / "o.gif")
    assert r.returncode == 2 and "frame 40" in r.stderr
    (tmp_path / "bad.json").write_text("{not json")
    r = run("overlay", media_dir / "image.png", tmp_path / "bad.json", "--out", tmp_path / "o.png")
    assert r.returncode == 2 and "bad.json" in r.stderr


def test_usage_error_exit_2():
    r = run("info")
    assert r.returncode == 2
