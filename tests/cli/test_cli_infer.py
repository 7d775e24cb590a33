"""`pixelwise segment` / `pixelwise ask` as a user runs them (in-process: the checkpoint loads in a second)."""

import json

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli import main
from pixelwise.core.media import save_video, uniform_indices
from tests.conftest import make_frames
from tests.pipeline.conftest import CHECKPOINT

FAST = ["--model", str(CHECKPOINT), "--device", "cpu", "--max-new-tokens", "3"]


@pytest.fixture()
def media(tmp_path):
    save_video(tmp_path / "clip.mp4", make_frames(20), fps=10)
    Image.fromarray(make_frames(1)[0]).save(tmp_path / "image.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:26, 10:26] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def test_segment_video_over_every_frame(media, capsys):
    out = media / "out"
    rc = main(["segment", str(media / "clip.mp4"), "the red square", "--frames", "4", "--propagate", "all",
               "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert printed.startswith("answer: ") and f"wrote: {out / 'result.json'}" in printed and "time: load" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["frame_indices"] == list(range(20)) and result["size"] == [48, 64]


def test_ask_with_points_boxes_and_masks(media, capsys):
    out = media / "image_out"
    rc = main(["ask", str(media / "image.png"), "What is [0]?", "--point", "20,15", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0 and "region [0]: point 20,15 on frame 0" in printed and "object [0]: mask on" in printed
    assert (out / "masks" / "object0.png").is_file() and (out / "overlay.png").is_file()

    out = media / "video_out"
    rc = main(["ask", str(media / "clip.mp4"), "Is [0] left of [1]?", "--box", "5,5,30,30@2", "--mask",
               f"{media / 'mask.png'}@3", "--option", "yes", "--option", "no", "--frames", "4", "--out", str(out),
               *FAST])
    printed = capsys.readouterr().out
    assert rc == 0 and "region [1]: mask of 256 px on frame 3" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["frame_indices"] == uniform_indices(20, 4)
    assert [o["id"] for o in result["objects"][:2]] == [0, 1]
    assert [m is not None for m in result["objects"][1]["masks"]] == [False, False, False, True]  # mask on frame 3


def test_bad_prompts_are_one_line_errors(media, capsys):
    rc = main(["ask", str(media / "image.png"), "What is [0]?", "--point", "200,15", *FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "outside the 64x48 frame" in err and "\n" not in err
    rc = main(["ask", str(media / "clip.mp4"), "What is [0]?", "--point", "20,15@9", "--frames", "4", *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "on frame 9, but there are only 4 frame(s)" in err and "reads 4 of the media's 20 frames" in err
    rc = main(["segment", str(media / "clip.mp4"), "x", "--model", str(media)])
    assert rc == 2 and "no config.json" in capsys.readouterr().err


def test_segment_takes_regions_and_prints_json(media, capsys):
    out = media / "seg_out"
    rc = main(["segment", str(media / "image.png"), "segment this object", "--point", "20,15", "--out", str(out),
               "--json", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)  # stdout is the JSON alone; the report goes to stderr
    assert result["objects"][0]["id"] == 0 and len(result["objects"][0]["masks"]) == 1
    assert "text" in result and "region [0]: point 20,15 on frame 0" in captured.err
    assert json.loads((out / "result.json").read_text())["objects"][0]["id"] == 0


@pytest.mark.parametrize(("question", "regions", "message"), [
    ("What is [3]?", ["--point", "20,15"], "names [3], but no such region was given (regions: [0])"),
    ("Describe [0].", [], "names [0], but no such region was given (regions: none)"),
    ("What is this?", ["--point", "20,15"], "region [0] is not named in the question"),
])
def test_questions_must_name_their_regions(media, capsys, question, regions, message):
    rc = main(["ask", str(media / "image.png"), question, *regions, *FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err


def test_unsupported_device_is_one_line(media, capsys):
    rc = main(["segment", str(media / "image.png"), "x", "--model", str(CHECKPOINT), "--device", "mps"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: device 'mps': pixelwise runs on cpu or cuda (cuda:N); mps is not supported"


def test_help_shows_no_type_after_plain_flags(capsys):
    from typer.testing import CliRunner

    from pixelwise.cli import app

    text = CliRunner().invoke(app, ["segment", "--help"], env={"COLUMNS": "200"}).output
    assert "--json" in text and "--point" in text and "X,Y@FRAME" in text
    assert "<bool>" not in text and "<str>" in text


def test_batch_answers_a_manifest_resumably(media, capsys):
    manifest = media / "queries.jsonl"
    queries = [
        {"id": "a", "media": "image.png", "text": "the red square"},
        {"id": "b", "media": "clip.mp4", "task": "ask", "text": "What is [0]?", "num_frames": 4,
         "prompts": [{"type": "point", "point": [20, 15], "frame": 1}]},
        {"id": "c", "media": "image.png", "task": "ask", "text": "What is [3]?"},  # names no region: an error line
    ]
    manifest.write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    out = media / "batch"
    args = ["batch", str(manifest), "--out", str(out), "--model", str(CHECKPOINT), "--device", "cpu"]
    assert main(args) == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # manifest order
    assert rows[0]["task"] == "segment" and "objects" in rows[0] and "text" in rows[0]
    assert rows[1]["frame_indices"] == uniform_indices(20, 4) and rows[1]["objects"][0]["id"] == 0
    assert rows[2]["error"]["type"] == "PromptError" and "names [3]" in rows[2]["error"]["message"]
    assert "3 queries: 3 answered here (1 with an error)" in capsys.readouterr().out
    # a killed run's half line is answered again; finished ones are not
    (out / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + '\n{"id": "c", "med')
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 answered here" in printed and "2 already done" in printed
    assert [json.loads(x)["id"] for x in (out / "results.jsonl").read_text().splitlines()] == ["a", "b", "c"]
    bad = media / "bad.jsonl"
    bad.write_text('{"media": "image.png", "txt": "x"}\n')
    assert main(["batch", str(bad), "--out", str(out)]) == 2
    assert "unknown key(s) txt" in capsys.readouterr().err


@pytest.mark.slow
def test_batch_under_torchrun_answers_every_query_once(media):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed next to this Python")
    manifest = media / "q.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"q{k}", "media": "image.png", "text": f"object {k}"}) + "\n"
                                for k in range(5)))
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29537", "-m", "pixelwise", "batch",
           str(manifest), "--out", str(media / "b2"), "--model", str(CHECKPOINT), "--device", "cpu", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (media / "b2" / "results.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == [f"q{k}" for k in range(5)] and not list((media / "b2").glob("*.rank*"))
    shutil.rmtree(media / "b2")
