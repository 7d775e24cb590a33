"""The HTTP API against a real uvicorn server on loopback, running the real (tiny, random) conformance model.

One server serves most tests (limits: 1 MiB uploads, 512x512 px, 40 source frames, 8 sampled frames); a second one
with a one-slot queue and a 1.5 s timeout checks overload behaviour. Every request loop is bounded in count and time.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import numpy as np
import pytest

from pixelwise.core import masks as mask_ops
from pixelwise.core.prompts import Point
from pixelwise.core.results import Result

from .conftest import CONFORMANCE_CKPT, api_server_cmd, free_port, rss_bytes, running_server

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(serve_media, tmp_path_factory):
    pytest.importorskip("pixelwise.pipeline")
    port = free_port()
    log = tmp_path_factory.mktemp("server_log") / "server.log"
    with running_server(api_server_cmd(port, serve_media), port, log_path=log) as proc:
        yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "media": serve_media}


@pytest.fixture(scope="module")
def pipe():
    from pixelwise import pipeline

    return pipeline.load(CONFORMANCE_CKPT, device="cpu")


def _post(server, endpoint: str, *, files=None, data=None, json_body=None, timeout: float = 120.0) -> httpx.Response:
    with httpx.Client(timeout=timeout) as c:
        if json_body is not None:
            return c.post(server["url"] + endpoint, json=json_body)
        return c.post(server["url"] + endpoint, files=files, data=data)


def _upload(server, name: str):
    return {"file": (name, (server["media"] / name).read_bytes())}


def _error(r: httpx.Response, status: int, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    for f in fragments:
        assert f in err["message"], err["message"]
    return err


def _masks(body: dict) -> list[np.ndarray]:
    h, w = body["size"]
    return [np.stack([mask_ops.rle_decode(m) if m else np.zeros((h, w), bool) for m in o["masks"]])
            for o in body["objects"]]


# ------------------------------------------------------------------------------------------------ valid requests


def test_health_model_and_openapi(server):
    with httpx.Client(timeout=10) as c:
        h = c.get(server["url"] + "/healthz")
        m = c.get(server["url"] + "/v1/model")
        o = c.get(server["url"] + "/openapi.json")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    info = m.json()
    assert info["limits"]["max_num_frames"] == 8 and info["limits"]["max_upload_bytes"] == 1 << 20
    assert info["model"]
    schema = o.json()
    assert {"/v1/segment", "/v1/ask", "/v1/model", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "PointSpec" in schema["components"]["schemas"]


def test_segment_image_upload_equals_the_pipeline(server, pipe):
    r = _post(server, "/v1/segment", files=_upload(server, "pixelworld_image.png"), data={"text": "the red circle"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "segment" and body["size"] == [128, 128] and body["frame_indices"] == [0]
    assert {"queue_s", "run_s", "total_s"} <= set(body["timings"])
    direct = pipe.segment(str(server["media"] / "pixelworld_image.png"), "the red circle", num_frames=8)
    assert body["answer"] == direct.answer
    assert len(body["objects"]) == len(direct.objects)
    for got, want in zip(_masks(body), direct.objects):
        assert np.array_equal(got, want.masks)


def test_segment_video_by_path_with_a_point(server, pipe):
    req = {"path": "pixelworld_clip.mp4", "text": "the red circle that moves to the left", "num_frames": 4,
           "prompts": [{"type": "point", "point": [104, 52], "frame": 0}]}
    r = _post(server, "/v1/segment", json_body=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["frame_indices"]) == 4 and body["frame_indices"][0] == 0
    for o in body["objects"]:
        assert len(o["masks"]) == 4
    # the clicked region comes back as an object with a mask on the prompted frame, as from the pipeline
    direct = pipe.segment(str(server["media"] / "pixelworld_clip.mp4"), req["text"], [Point(104, 52, frame=0)],
                          num_frames=4)
    assert len(body["objects"]) == len(direct.objects) >= 1
    for got, want in zip(_masks(body), direct.objects):
        assert np.array_equal(got, want.masks)
    assert _masks(body)[0][0].any()
    Result.from_json({k: body[k] for k in ("answer", "size", "frame_indices", "objects", "timings")})


def test_ask_with_box_and_mask_prompts_multipart(server):
    mask = np.zeros((128, 128), bool)
    mask[30:46, 26:42] = True
    prompts = [{"type": "box", "box": [70, 22, 106, 58], "frame": 0},
               {"type": "mask", "rle": mask_ops.rle_encode(mask), "frame": 0}]
    r = _post(server, "/v1/ask", files=_upload(server, "pixelworld_image.png"),
              data={"text": "Is [0] the same colour as [1]?", "prompts": json.dumps(prompts)})
    assert r.status_code == 200, r.text
    assert r.json()["task"] == "ask" and isinstance(r.json()["answer"], str) and "text" in r.json()


# ------------------------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("case", [
    "bad_media", "bad_json", "bad_prompts_json", "point_outside", "frame_outside", "oversize_upload",
    "too_many_source_frames", "too_many_num_frames", "too_many_tokens", "too_many_pixels", "path_traversal", "symlink_escape",
    "missing_text", "unknown_field", "file_and_path", "no_media", "wrong_content_type", "empty_upload",
])
def test_malformed_requests_get_4xx_with_a_message(server, case):
    up = _upload
    expected = {
        "bad_media": (lambda: _post(server, "/v1/segment", files=up(server, "notes.txt"), data={"text": "x"}),
                      422, ["uploaded file 'notes.txt'", "neither a readable image nor a readable video"]),
        "bad_json": (lambda: httpx.post(server["url"] + "/v1/segment", content=b'{"text": "x",',
                                        headers={"content-type": "application/json"}, timeout=30),
                     422, ["body: not valid JSON"]),
        "bad_prompts_json": (lambda: _post(server, "/v1/ask", files=up(server, "pixelworld_image.png"),
                                           data={"text": "x", "prompts": "[{'type': 'point'}"}),
                             422, ["prompts: not valid JSON"]),
        "point_outside": (lambda: _post(server, "/v1/segment", json_body={
            "path": "pixelworld_image.png", "text": "x", "prompts": [{"type": "point", "point": [200, 5]}]}),
            422, ["prompts[0]", "outside the 128x128 frame"]),
        "frame_outside": (lambda: _post(server, "/v1/segment", json_body={
            "path": "pixelworld_clip.mp4", "text": "x", "num_frames": 4,
            "prompts": [{"type": "box", "box": [1, 1, 9, 9], "frame": 4}]}),
            422, ["frame 4, but there are only 4 frame(s)"]),
        "oversize_upload": (lambda: _post(server, "/v1/segment", files=up(server, "oversize.bin"), data={"text": "x"}),
                            413, ["exceeds the upload limit"]),
        "too_many_source_frames": (lambda: _post(server, "/v1/segment", files=up(server, "long_clip.mp4"),
                                                 data={"text": "x", "num_frames": "4"}),
                                   413, ["60 frames exceed the limit of 40"]),
        "too_many_num_frames": (lambda: _post(server, "/v1/segment", json_body={
            "path": "pixelworld_clip.mp4", "text": "x", "num_frames": 9}), 422, ["num_frames: 9 is over"]),
        "too_many_tokens": (lambda: _post(server, "/v1/ask", json_body={
            "path": "pixelworld_image.png", "text": "x", "max_new_tokens": 513}), 422, ["max_new_tokens: 513 is over"]),
        "too_many_pixels": (lambda: _post(server, "/v1/segment", json_body={"path": "wide.png", "text": "x"}),
                            413, ["600x600 exceeds the limit"]),
        "path_traversal": (lambda: _post(server, "/v1/segment", json_body={"path": "../../etc/passwd", "text": "x"}),
                           403, ["outside the server's media root"]),
        "symlink_escape": (lambda: _post(server, "/v1/segment", json_body={"path": "escape.png", "text": "x"}),
                           403, ["outside the server's media root"]),
        "missing_text": (lambda: _post(server, "/v1/segment", files=up(server, "pixelworld_image.png"), data={}),
                         422, ["text: Field required"]),
        "unknown_field": (lambda: _post(server, "/v1/ask", json_body={"path": "pixelworld_image.png", "text": "x",
                                                                      "colour": "red"}),
                          422, ["colour"]),
        "file_and_path": (lambda: _post(server, "/v1/segment", files=up(server, "pixelworld_image.png"),
                                        data={"text": "x", "path": "pixelworld_image.png"}),
                          422, ["exactly one media source"]),
        "no_media": (lambda: _post(server, "/v1/segment", json_body={"text": "x"}), 422, ["exactly one media source"]),
        "wrong_content_type": (lambda: httpx.post(server["url"] + "/v1/segment", content=b"text=x",
                                                  headers={"content-type": "text/plain"}, timeout=30),
                               422, ["Content-Type 'text/plain' is not accepted"]),
        "empty_upload": (lambda: _post(server, "/v1/segment", files={"file": ("e.png", b"")}, data={"text": "x"}),
                         422, ["empty"]),
    }
    send, status, fragments = expected[case]
    _error(send(), status, *fragments)


def test_exception_inside_the_model_is_a_clean_error_and_the_server_keeps_serving(server):
    r = _post(server, "/v1/segment", files=_upload(server, "pixelworld_image.png"), data={"text": "RAISE-IN-MODEL"})
    err = _error(r, 500, "the model failed on this request", "deliberate failure inside the model")
    assert "Traceback" not in err["message"]
    ok = _post(server, "/v1/segment", files=_upload(server, "pixelworld_image.png"), data={"text": "the red circle"})
    assert ok.status_code == 200
    assert httpx.get(server["url"] + "/healthz", timeout=10).json()["status"] == "ok"


# ------------------------------------------------------------------------------------------------ load


@pytest.mark.slow
def test_concurrent_burst_has_no_5xx_and_no_memory_growth(server):
    """8 clients x 25 requests (uploads and paths, segment and ask), bounded at 300 s; RSS measured after warm-up."""
    image = (server["media"] / "pixelworld_image.png").read_bytes()

    def client(k: int) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(base_url=server["url"], timeout=120) as c:
            for i in range(25):
                t0 = time.perf_counter()
                if (k + i) % 2:  # short answers keep 200 requests of the random model (it babbles) fast
                    r = c.post("/v1/segment", files={"file": ("i.png", image)},
                               data={"text": "the red circle", "max_new_tokens": "8"})
                else:
                    r = c.post("/v1/ask", json={"path": "pixelworld_image.png", "text": "What color is [0]?",
                                                "max_new_tokens": 8,
                                                "prompts": [{"type": "point", "point": [34, 38]}]})
                out.append((r.status_code, time.perf_counter() - t0))
        return out

    client(0)  # warm-up: caches, allocator pools
    rss_before = rss_bytes(server["proc"].pid)
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = [s for f in [ex.submit(client, k) for k in range(8)] for s in f.result(timeout=300)]
    wall = time.perf_counter() - t0
    rss_after = rss_bytes(server["proc"].pid)
    codes = [c for c, _ in results]
    latencies = sorted(t for _, t in results)
    print(f"\nload: {len(codes)} requests in {wall:.1f} s ({len(codes) / wall:.1f} req/s); "
          f"latency p50 {latencies[len(latencies) // 2]:.3f} s, p95 {latencies[int(len(latencies) * 0.95)]:.3f} s; "
          f"RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB")
    assert len(codes) == 200
    assert not [c for c in codes if c >= 500]
    assert set(codes) == {200}
    assert wall < 300
    assert rss_after - rss_before < 64 << 20
    assert httpx.get(server["url"] + "/healthz", timeout=10).status_code == 200


def test_full_queue_and_timeout_answer_503_with_retry_after(serve_media, tmp_path):
    """A one-slot queue and a 2 s limit: the third concurrent request is refused at once, the two others expire;
    the worker drains the abandoned jobs and then serves normally."""
    pytest.importorskip("pixelwise.pipeline")
    port = free_port()
    cmd = api_server_cmd(port, serve_media, max_queue=1, timeout=2.0)
    with running_server(cmd, port, log_path=tmp_path / "server.log"):
        url = f"http://127.0.0.1:{port}"
        slow = {"path": "pixelworld_image.png", "text": "SLEEP-IN-MODEL:3 the red circle", "max_new_tokens": 8}
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            first = ex.submit(httpx.post, url + "/v1/segment", json=slow, timeout=30)
            time.sleep(0.5)  # the first job is running; the next one fills the one-slot queue
            second = ex.submit(httpx.post, url + "/v1/segment", json=slow, timeout=30)
            time.sleep(0.3)
            third = httpx.post(url + "/v1/segment", json=slow, timeout=30)
            responses = [first.result(timeout=30), second.result(timeout=30)]
        err = _error(third, 503, "the server is busy")
        assert int(third.headers["Retry-After"]) >= 1 and err["type"] == "QueueFullError"
        for r in responses:  # the running one and the queued one both ran past the limit
            _error(r, 503, "did not finish within the server's limit of 2 s")
            assert int(r.headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the abandoned running job finishes; the queued one is skipped
            queue = httpx.get(url + "/v1/model", timeout=10).json()["queue"]
            if not queue["running"] and queue["queued"] == 0:
                break
            time.sleep(0.2)
        assert queue["skipped"] == 1
        ok = httpx.post(url + "/v1/segment", json={"path": "pixelworld_image.png", "text": "the red circle",
                                                   "max_new_tokens": 8}, timeout=30)
        assert ok.status_code == 200, ok.text


def test_a_burst_of_hostile_inputs_is_4xx_and_memory_comes_back(server):
    """Uploads whose later frames grow (header 16x16, then 1920x1080), JSON nested 100,000 deep, 5,000-digit
    integers and huge RLE run lists: every one a 4xx within seconds, RSS back within 200 MB, /healthz ok."""
    from tools.robustness.corpus import mpegts_bytes

    grow = mpegts_bytes(16, 16, 2) + mpegts_bytes(1920, 1080, 2)
    rss_start = rss_bytes(server["proc"].pid)
    requests = []
    for k in range(24):
        kind = k % 4
        if kind == 0:
            requests.append(lambda: _post(server, "/v1/segment", files={"file": ("grow.ts", grow)},
                                          data={"text": "x", "num_frames": "4"}))
        elif kind == 1:
            requests.append(lambda: httpx.post(server["url"] + "/v1/segment", content=b"[" * 100_000 + b"]" * 100_000,
                                               headers={"content-type": "application/json"}, timeout=30))
        elif kind == 2:
            requests.append(lambda: httpx.post(server["url"] + "/v1/segment",
                                               content=b'{"text": "x", "num_frames": ' + b"9" * 5000 + b"}",
                                               headers={"content-type": "application/json"}, timeout=30))
        else:
            rle = {"size": [128, 128], "counts": [1] * 20_000}
            requests.append(lambda: _post(server, "/v1/segment", json_body={
                "path": "pixelworld_image.png", "text": "x", "prompts": [{"type": "mask", "rle": rle}]}))
    for send in requests:
        t0 = time.perf_counter()
        r = send()
        assert 400 <= r.status_code < 500, r.text[:300]
        assert time.perf_counter() - t0 < 10
        assert r.json()["error"]["message"]
    rss_end = rss_bytes(server["proc"].pid)
    assert rss_end - rss_start < 200 << 20, (rss_start >> 20, rss_end >> 20)
    assert httpx.get(server["url"] + "/healthz", timeout=10).json()["status"] == "ok"


def test_a_client_that_disconnects_does_not_keep_its_queued_job(serve_media, tmp_path):
    """Clients that give up while the model is busy: their queued jobs are dropped, so the next request does not
    wait for them."""
    pytest.importorskip("pixelwise.pipeline")
    port = free_port()
    with running_server(api_server_cmd(port, serve_media, max_queue=16), port, log_path=tmp_path / "server.log"):
        url = f"http://127.0.0.1:{port}"
        slow = {"path": "pixelworld_image.png", "text": "SLEEP-IN-MODEL:2 the red circle", "max_new_tokens": 4}
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            first = ex.submit(httpx.post, url + "/v1/segment", json=slow, timeout=30)
            time.sleep(0.5)
            for _ in range(6):  # each waits 0.2 s behind the running job, then hangs up
                with pytest.raises(httpx.TimeoutException):
                    httpx.post(url + "/v1/segment", json=slow, timeout=0.2)
            assert first.result(timeout=30).status_code == 200
        deadline = time.monotonic() + 10
        while httpx.get(url + "/v1/model", timeout=10).json()["queue"]["queued"] and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = httpx.get(url + "/v1/model", timeout=10).json()["queue"]
        assert stats["skipped"] == 6 and stats["completed"] == 1, stats
