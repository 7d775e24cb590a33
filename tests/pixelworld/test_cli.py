"""`pixelwise pixelworld generate|show` end to end."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pixelwise.cli import main


def test_generate_show_and_export_from_the_cli(tmp_path, capsys):
    out = tmp_path / "pw"
    rc = main(["pixelworld", "generate", "--out", str(out), "--split", "val", "--num", "4", "--seed", "2",
               "--tasks", "referring,region", "--format", "refcoco", "--workers", "1"])
    assert rc == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["task"] for x in lines] == ["referring", "region"] * 2
    assert (out / "refcoco" / "refcoco" / "instances.json").is_file()
    printed = capsys.readouterr().out
    assert "exported 2 of 4 samples to the refcoco layout" in printed and "2 region (image)" in printed
    rc = main(["pixelworld", "show", str(out), "--index", "0", "--out", str(tmp_path / "s.png")])
    assert rc == 0
    im = np.asarray(Image.open(tmp_path / "s.png"))
    assert im.shape[1] == 128 * 3 and im.shape[0] > 128 * 3  # media + text panel


def test_show_a_video_sample_writes_a_gif(tmp_path):
    out = tmp_path / "pw"
    assert main(["pixelworld", "generate", "--out", str(out), "--num", "1", "--video", "--frames", "8",
                 "--workers", "1"]) == 0
    assert main(["pixelworld", "show", str(out), "-i", "0"]) == 0
    gif = next((out / "show").glob("*.gif"))
    assert Image.open(gif).n_frames == 8


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["pixelworld", "generate", "--out", str(tmp_path), "--split", "dev"]) == 2
    assert "unknown split" in capsys.readouterr().err
    assert main(["pixelworld", "generate", "--out", str(tmp_path), "--format", "voc"]) == 2
    assert main(["pixelworld", "show", str(tmp_path / "missing")]) == 2
