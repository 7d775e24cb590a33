"""`pixelwise serve` itself (the command, not a test harness) answers like `pixelwise segment` / `pixelwise ask`.

The server and the CLI run as separate processes on the same PixelWorld example; masks are compared pixel for pixel
(decoded from the server's COCO RLE and from the CLI's result.json).
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from pixelwise.core.results import Result

from .conftest import CONFORMANCE_CKPT, EXAMPLES, REPO, free_port, running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEFAULT_MODEL = REPO / "pixelwise" / "checkpoints" / "unipixel-tiny"
MODELS = [pytest.param(CONFORMANCE_CKPT, id="conformance"),
          pytest.param(DEFAULT_MODEL, id="default", marks=pytest.mark.skipif(
              not (DEFAULT_MODEL / "config.json").is_file(), reason="the default model has not been trained yet"))]


MAX_NEW_TOKENS = 64  # the random conformance model never stops by itself; same bound on both sides


def _cli(args: list[str], out) -> Result:
    proc = subprocess.run([sys.executable, "-m", "pixelwise", *args, "--out", str(out), "--device", "cpu",
                           "--max-new-tokens", str(MAX_NEW_TOKENS)],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Result.load(out / "result.json")


def _same(body: dict, cli: Result) -> None:
    served = Result.from_json({k: body[k] for k in ("answer", "size", "frame_indices", "objects")}, source="server")
    assert served.answer == cli.answer
    assert served.frame_indices == cli.frame_indices
    assert [o.id for o in served.objects] == [o.id for o in cli.objects]
    for a, b in zip(served.objects, cli.objects):
        assert np.array_equal(a.masks, b.masks)


@pytest.mark.parametrize("model", MODELS)
def test_pixelwise_serve_masks_equal_the_cli(model, tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "pixelwise", "serve", "--model", str(model), "--port", str(port), "--device", "cpu",
           "--media-root", str(EXAMPLES)]
    with running_server(cmd, port, log_path=tmp_path / "serve.log"):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/v1/model", timeout=10).json()["model"]["family"] == "unipixel"
        clip = EXAMPLES / "pixelworld_clip.mp4"
        with clip.open("rb") as f:
            seg = httpx.post(url + "/v1/segment", files={"file": ("clip.mp4", f)},
                             data={"text": "the red circle that moves to the left", "max_new_tokens": str(MAX_NEW_TOKENS)},
                             timeout=600)
        assert seg.status_code == 200, seg.text
        ask = httpx.post(url + "/v1/ask", json={"path": "pixelworld_image.png", "text": "What color is [0]?",
                                                "prompts": [{"type": "point", "point": [34, 38]}],
                                                "max_new_tokens": MAX_NEW_TOKENS}, timeout=600)
        assert ask.status_code == 200, ask.text
    _same(seg.json(), _cli(["segment", "--model", str(model), str(clip), "the red circle that moves to the left"],
                           tmp_path / "seg"))
    cli_ask = _cli(["ask", "--model", str(model), str(EXAMPLES / "pixelworld_image.png"), "What color is [0]?",
                    "--point", "34,38"], tmp_path / "ask")
    _same(ask.json(), cli_ask)
    assert cli_ask.objects and cli_ask.objects[0].masks.any()  # the region's mask: a non-trivial comparison
