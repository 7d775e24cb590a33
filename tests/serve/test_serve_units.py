"""Serving parts that need neither a model nor a server: paths, the worker queue, request parsing, demo helpers."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest

from pixelwise.core import masks as mask_ops
from pixelwise.core.errors import MediaError, MediaTooLargeError, PromptError
from pixelwise.core.results import Result, SegObject
from pixelwise.serve.limits import BadRequestError, ForbiddenPathError, ServeLimits, resolve_media_path
from pixelwise.serve.service import (
    MediaFacts,
    SegmentRequest,
    build_prompts,
    check_request,
    inspect_media,
    parse_request,
)
from pixelwise.serve.worker import ModelWorker, QueueFullError

# ------------------------------------------------------------------------------------------------ paths


def test_paths_inside_the_root_resolve(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    assert resolve_media_path("a/x.png", tmp_path) == (tmp_path / "a" / "x.png").resolve()
    assert resolve_media_path(str(tmp_path / "a" / "x.png"), tmp_path) == (tmp_path / "a" / "x.png").resolve()
    assert resolve_media_path("a/../a/x.png", tmp_path).name == "x.png"


@pytest.mark.parametrize("path", ["../outside.png", "/etc/passwd", "a/../../outside.png", "link.png"])
def test_paths_outside_the_root_are_refused(tmp_path, path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ForbiddenPathError, match="outside the server's media root") as e:
        resolve_media_path(path, root)
    assert e.value.http_status == 403
    assert str(tmp_path) not in str(e.value)  # the message echoes the request, not the server's layout


def test_frame_folders_are_checked_frame_by_frame_and_fifos_refused(tmp_path):
    import os

    root = tmp_path / "root"
    (root / "frames").mkdir(parents=True)
    (root / "frames" / "00000.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    assert resolve_media_path("frames", root) == (root / "frames").resolve()
    (root / "frames" / "00001.png").symlink_to(tmp_path / "secret.png")  # the folder is inside, a frame is not
    with pytest.raises(ForbiddenPathError, match="frame '00001.png' links outside"):
        resolve_media_path("frames", root)
    os.mkfifo(root / "pipe.mp4")
    with pytest.raises(MediaError, match="not a regular file"):
        resolve_media_path("pipe.mp4", root)
    # outside the root, existing or not, the answer is the same 403: it tells nothing about the server's disk
    msgs = set()
    for p in ("../secret.png", "../nope.png"):
        with pytest.raises(ForbiddenPathError) as e:
            resolve_media_path(p, root)
        msgs.add(str(e.value).replace(p, "P"))
    assert len(msgs) == 1


def test_paths_disabled_and_missing(tmp_path):
    with pytest.raises(ForbiddenPathError, match="disabled"):
        resolve_media_path("x.png", None)
    with pytest.raises(MediaError, match="no such file"):
        resolve_media_path("nope.png", tmp_path)
    with pytest.raises(BadRequestError):
        resolve_media_path("a\x00b", tmp_path)


# ------------------------------------------------------------------------------------------------ worker


def test_worker_runs_jobs_in_order_and_survives_exceptions():
    w = ModelWorker(max_queue=4)
    try:
        order: list[int] = []
        futs = [w.submit(order.append, i) for i in range(3)]
        bad = w.submit(lambda: 1 / 0)
        for f in futs:
            f.result(timeout=5)
        with pytest.raises(ZeroDivisionError):
            bad.result(timeout=5)
        assert order == [0, 1, 2]
        assert w.submit(lambda: "still serving").result(timeout=5) == "still serving"
        assert w.stats()["failed"] == 1 and w.alive
    finally:
        w.close()
    assert not w.alive


def test_worker_refuses_when_full_and_skips_cancelled_jobs():
    w = ModelWorker(max_queue=1)
    gate = threading.Event()
    try:
        running = w.submit(gate.wait, 5)
        deadline = time.monotonic() + 5
        while not w.stats()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = w.submit(lambda: "never")
        with pytest.raises(QueueFullError) as e:
            w.submit(lambda: "refused")
        assert e.value.http_status == 503 and e.value.retry_after >= 1
        assert waiting.cancel()  # the client gave up before the job started
        gate.set()
        running.result(timeout=5)
        assert w.submit(lambda: "after").result(timeout=5) == "after"
        assert w.stats()["skipped"] == 1
    finally:
        gate.set()
        w.close()


def test_a_failed_job_leaves_nothing_referenced():
    """The traceback of a failed job keeps no locals alive (they would pin the job's decoded frames)."""
    import gc
    import weakref

    class Big:
        pass

    refs = []

    def job():
        frames = Big()  # stands in for a decoded clip
        refs.append(weakref.ref(frames))
        raise ValueError("bad media")

    w = ModelWorker(max_queue=2)
    try:
        fut = w.submit(job)
        with pytest.raises(ValueError):
            fut.result(timeout=5)
        gc.collect()
        assert refs[0]() is None  # gone although the future still holds the exception
    finally:
        w.close()


def test_a_client_that_leaves_drops_its_queued_job():
    import asyncio
    from concurrent.futures import Future

    from pixelwise.serve.api import ClientGoneError, _wait_unless_disconnected

    class Gone:
        async def is_disconnected(self):
            return True

    fut = Future()
    with pytest.raises(ClientGoneError):
        asyncio.run(_wait_unless_disconnected(Gone(), fut, timeout=5, poll=0.01))
    assert fut.cancelled()  # the worker will skip it

    class Waiting:
        async def is_disconnected(self):
            return False

    fut = Future()
    with pytest.raises(TimeoutError):
        asyncio.run(_wait_unless_disconnected(Waiting(), fut, timeout=0.05, poll=0.01))
    assert fut.cancelled()


def test_healthz_reports_a_job_past_the_timeout():
    from fastapi.testclient import TestClient

    from pixelwise.serve.api import create_app

    gate = threading.Event()

    class Slow:
        def info(self):
            return {"family": "stub"}

        def segment(self, media, text, num_frames=16, propagate="sampled"):
            gate.wait(10)
            raise PromptError("done")

    from .conftest import EXAMPLES

    app = create_app(Slow(), ServeLimits(timeout_s=0.3), media_root=EXAMPLES)
    with TestClient(app) as client:
        try:
            assert client.get("/healthz").json()["status"] == "ok"
            r = client.post("/v1/segment", json={"path": "pixelworld_image.png", "text": "x"})
            assert r.status_code == 503  # the request timed out; its job still runs
            time.sleep(0.1)
            h = client.get("/healthz")
            assert h.status_code == 503 and h.json()["status"] == "degraded" and "over the 0.3 s" in h.json()["reason"]
        finally:
            gate.set()
        deadline = time.monotonic() + 5
        while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/healthz").json()["status"] == "ok"


# ------------------------------------------------------------------------------------------------ requests


def test_request_fields_are_checked_with_field_names():
    with pytest.raises(BadRequestError, match="text: Field required"):
        parse_request(SegmentRequest, {})
    with pytest.raises(BadRequestError, match=r"prompts\[0\]\.box: List should have at least 4 items"):
        parse_request(SegmentRequest, {"text": "x", "prompts": [{"type": "box", "box": [1, 2]}]})
    with pytest.raises(BadRequestError, match=r"prompts\[0\]: Input tag 'circle'"):
        parse_request(SegmentRequest, {"text": "x", "prompts": [{"type": "circle"}]})
    with pytest.raises(BadRequestError, match="colour: Extra inputs are not permitted"):
        parse_request(SegmentRequest, {"text": "x", "colour": "red"})
    with pytest.raises(BadRequestError, match="propagate"):
        parse_request(SegmentRequest, {"text": "x", "propagate": "some"})
    limits = ServeLimits(max_num_frames=8, max_text_chars=10, max_prompts=1)
    for fields, message in (({"text": "x", "num_frames": 9}, "num_frames: 9 is over"),
                            ({"text": "x" * 11}, "text: 11 characters"),
                            ({"text": "   "}, "blank"),
                            ({"text": "x", "prompts": [{"type": "point", "point": [1, 1]}] * 2}, "prompts: 2 given")):
        with pytest.raises(BadRequestError, match=message):
            check_request(parse_request(SegmentRequest, fields), limits)


def test_prompts_are_validated_against_the_frames():
    facts = MediaFacts(height=48, width=64, source_frames=12, sampled_frames=4, is_image=False)
    rle = mask_ops.rle_encode(np.pad(np.ones((4, 4), bool), ((10, 34), (10, 50))))
    req = parse_request(SegmentRequest, {"text": "x", "prompts": [
        {"type": "point", "point": [3, 4], "frame": 3, "positive": False},
        {"type": "box", "box": [1, 2, 30, 40], "frame": 1},
        {"type": "mask", "rle": rle, "frame": 0}]})
    point, box, mask = build_prompts(req.prompts, facts, 4)
    assert (point.x, point.y, point.frame, point.positive) == (3, 4, 3, False)
    assert box.xyxy == (1, 2, 30, 40) and mask.mask.sum() == 16
    bad = [({"type": "point", "point": [64, 4]}, "outside the 64x48 frame"),
           ({"type": "point", "point": [3, 4], "frame": 4}, "on frame 4, but there are only 4 frame"),
           ({"type": "box", "box": [10, 2, 5, 40]}, "is empty"),
           ({"type": "mask", "rle": mask_ops.rle_encode(np.ones((8, 8), bool))}, r"prompts\[0\]"),
           ({"type": "mask", "rle": {"size": [48, 64], "counts": "!!"}}, r"prompts\[0\]")]
    for spec, message in bad:
        with pytest.raises(PromptError, match=message):
            build_prompts(parse_request(SegmentRequest, {"text": "x", "prompts": [spec]}).prompts, facts, 4)


def test_media_limits_apply_before_decoding(tmp_path):
    from PIL import Image

    from pixelwise.core.media import save_video

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "img.png")
    save_video(tmp_path / "v.mp4", np.zeros((10, 16, 16, 3), np.uint8), fps=5)
    facts = inspect_media(tmp_path / "img.png", 16, "sampled", ServeLimits())
    assert (facts.height, facts.width, facts.sampled_frames, facts.is_image) == (40, 50, 1, True)
    assert inspect_media(tmp_path / "v.mp4", 4, "sampled", ServeLimits()).sampled_frames == 4
    assert inspect_media(tmp_path / "v.mp4", 4, "all", ServeLimits()).sampled_frames == 10
    with pytest.raises(MediaTooLargeError, match="exceeds the limit of 1000 pixels"):
        inspect_media(tmp_path / "img.png", 1, "sampled", ServeLimits(max_pixels=1000))
    with pytest.raises(MediaTooLargeError, match="10 frames exceed the limit of 5"):
        inspect_media(tmp_path / "v.mp4", 4, "sampled", ServeLimits(max_source_frames=5))
    with pytest.raises(MediaTooLargeError, match="propagate='sampled'"):
        inspect_media(tmp_path / "v.mp4", 4, "all", ServeLimits(max_decoded_bytes=16 * 16 * 3 * 5))


# ------------------------------------------------------------------------------------------------ demo helpers


def test_answer_spans_are_colored_like_their_masks():
    pytest.importorskip("gradio")
    from pixelwise.core.viz import color_hex
    from pixelwise.serve.demo import answer_html

    m = np.zeros((1, 8, 8), bool)
    r = Result("It is the <red> circle [0] and [1].", [SegObject(0, m, (23, 26)), SegObject(3, m, (31, 34)),
                                                       SegObject(5, m, None)], [0], (8, 8))
    out = answer_html(r)
    assert f'data-object="0" style="background:{color_hex(0)}' in out and ">[0]</span>" in out
    assert f'data-object="3" style="background:{color_hex(3)}' in out and ">[1]</span>" in out
    assert "&lt;red&gt;" in out  # answer text is escaped, never injected as HTML
    assert f'data-object="5" style="background:{color_hex(5)}' in out  # an object without a span is still listed


def test_demo_clicks_make_api_prompts():
    pytest.importorskip("gradio")
    from pixelwise.serve.demo import BOX, POINT_NEG, POINT_POS, DemoApp, draw_prompts

    app = DemoApp.__new__(DemoApp)  # the click handlers use no model
    text, pending = app.add_click(10, 12, POINT_POS, 0, "[]", None)
    assert json.loads(text) == [{"type": "point", "point": [10.0, 12.0], "frame": 0, "positive": True}]
    text, pending = app.add_click(3, 4, POINT_NEG, 2, text, None)
    assert json.loads(text)[1]["positive"] is False and pending is None
    text, pending = app.add_click(30, 5, BOX, 1, text, None)
    assert pending == [30.0, 5.0, 1] and len(json.loads(text)) == 2
    text, pending = app.add_click(20, 25, BOX, 1, text, pending)
    assert json.loads(text)[2] == {"type": "box", "box": [20.0, 5.0, 31.0, 26.0], "frame": 1} and pending is None
    frame = np.zeros((40, 40, 3), np.uint8)
    drawn = draw_prompts(frame, json.loads(text), 0, None)
    assert drawn[12, 10].tolist() == [40, 200, 60]  # the positive point of frame 0 is drawn in green
    assert drawn[4, 3].tolist() == [0, 0, 0]  # the negative point is on frame 2, not shown on frame 0


def test_brushed_strokes_become_mask_and_box_prompts():
    pytest.importorskip("gradio")
    from pixelwise.serve.demo import DemoApp

    from .conftest import EXAMPLES

    app = DemoApp.__new__(DemoApp)
    app.limits, app.max_num_frames = ServeLimits(), 32
    app._clips, app._clips_lock = OrderedDict(), threading.Lock()
    layer = np.zeros((128, 128, 4), np.uint8)
    layer[30:40, 20:50] = (255, 220, 0, 255)  # a painted stroke
    editor = {"background": np.zeros((128, 128, 4), np.uint8), "layers": [layer], "composite": None}
    media = str(EXAMPLES / "pixelworld_image.png")
    text = app.add_brush(editor, False, media, 1, 0, "[]")
    (mask_prompt,) = json.loads(text)
    assert mask_prompt["type"] == "mask" and mask_ops.rle_decode(mask_prompt["rle"]).sum() == 300
    text = app.add_brush(editor, True, media, 1, 0, text)
    assert json.loads(text)[1] == {"type": "box", "box": [20, 30, 50, 40], "frame": 0}
    with pytest.raises(BadRequestError, match="brush over the object first"):
        app.add_brush({"layers": [np.zeros((128, 128, 4), np.uint8)]}, False, media, 1, 0, "[]")


def test_answers_name_objects_and_take_the_overlay_colours():
    pytest.importorskip("gradio")
    from pixelwise.core.viz import color_hex
    from pixelwise.serve.demo import answer_html

    m = np.zeros((1, 8, 8), bool)
    r = Result("[0] <|seg|> is left of <|seg|>.", [SegObject(0, m, (4, 11)), SegObject(1, m, (23, 30))], [0], (8, 8))
    out = answer_html(r, [(60, 180, 75), (0, 130, 200)])
    assert "&lt;|seg|&gt;" not in out and ">[0]</span> is left of <span" in out and ">[1]</span>." in out
    assert f"background:{color_hex(0, (60, 180, 75))}" in out  # the colour the overlay chose, not the palette's


def test_the_demo_offers_what_the_model_reads_and_keeps_fitting_prompts():
    pytest.importorskip("gradio")
    from pixelwise.core.clip import Clip
    from pixelwise.serve.demo import BOX, POINT_NEG, POINT_POS, click_modes, offered_tabs, prompts_that_fit

    unipixel = {"visual_prompts": ["point", "box", "mask"], "negative_points": False, "video": True}
    assert click_modes(unipixel) == [POINT_POS, BOX]  # UniPixel refuses negative points: not offered
    assert click_modes({**unipixel, "negative_points": True}) == [POINT_POS, POINT_NEG, BOX]
    assert [t.key for t in offered_tabs(unipixel)] == ["img-seg", "vid-seg", "img-ask", "vid-ask"]
    image_only = {"visual_prompts": [], "negative_points": False, "video": False}  # PixelLM, UFO
    assert [t.key for t in offered_tabs(image_only)] == ["img-seg"] and click_modes(image_only) == []

    clip = Clip(np.zeros((4, 48, 64, 3), np.uint8))
    mask = np.zeros((48, 64), bool)
    mask[5:9, 5:9] = True
    prompts = [{"type": "point", "point": [10, 10], "frame": 3}, {"type": "point", "point": [100, 10], "frame": 0},
               {"type": "box", "box": [1, 1, 20, 20], "frame": 4}, {"type": "mask", "rle": mask_ops.rle_encode(mask)},
               {"type": "box", "box": "bad"}, {"type": "lasso"}]
    assert prompts_that_fit(prompts, clip) == [prompts[0], prompts[3]]  # inside the frames and frame range only


def test_the_demo_decodes_under_the_api_limits_and_bounds_its_cache(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from pixelwise.core.media import save_video
    from pixelwise.serve import demo

    app = demo.DemoApp.__new__(demo.DemoApp)
    app.limits, app.max_num_frames = ServeLimits(max_decoded_bytes=64 * 48 * 3 * 3), 32
    app._clips, app._clips_lock = OrderedDict(), threading.Lock()
    save_video(tmp_path / "v.mp4", np.zeros((8, 48, 64, 3), np.uint8), fps=4)
    with pytest.raises(MediaTooLargeError, match="decoding 4 frame"):
        app.clip(str(tmp_path / "v.mp4"), 4)  # refused from the header: nothing decoded, nothing cached
    assert not app._clips
    assert app.clip(str(tmp_path / "v.mp4"), 2).num_frames == 2
    monkeypatch.setattr(demo, "CACHE_BYTES", 64 * 48 * 3 * 3)  # room for one 2-frame clip and a 1-frame one
    app.clip(str(tmp_path / "v.mp4"), 1)
    app.clip(str(tmp_path / "v.mp4"), 3)
    assert [k[1] for k in app._clips] == [3]  # older clips evicted by bytes, the newest kept
