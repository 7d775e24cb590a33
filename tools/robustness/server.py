"""The media cases of the corpus uploaded to the HTTP server (in process, FastAPI's test client).

The model is a stub that decodes the sampled frames like a family does and returns an empty `Result`, so what is
tested is the server's handling of hostile uploads: every case must end in 2xx or 4xx with a JSON error message,
and `/healthz` must answer 200 afterwards. A model that raises must give a 5xx for that request only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pixelwise.core.results import Result


class DecodingStubPipeline:
    """Decodes the media it is given (as a real family does) and answers nothing; `text == "raise"` raises."""

    def info(self) -> dict[str, Any]:
        return {"family": "stub", "name": "decoding-stub"}

    def segment(self, media: str, text: str, num_frames: int = 16, propagate: str = "sampled") -> Result:
        from pixelwise.core.media import load_media

        if text == "raise":
            raise RuntimeError("injected failure inside the model")
        clip = load_media(media, num_frames=num_frames)
        return Result("", [], list(range(clip.num_frames)), clip.size)

    def ask(self, media: str, question: str, regions=None, num_frames: int = 16) -> Result:
        return self.segment(media, question, num_frames)


def server_available() -> bool:
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401

        from pixelwise.serve.api import create_app  # noqa: F401
    except ImportError:
        return False
    return True


def run_media_through_server(cases: list, timeout_s: float = 60.0, progress: Any = None) -> list[dict[str, Any]]:
    """Upload every media file case to `/v1/segment`; returns one record per case plus the model-fault check."""
    from fastapi.testclient import TestClient

    from pixelwise.serve.api import create_app
    from pixelwise.serve.limits import ServeLimits

    app = create_app(DecodingStubPipeline(), ServeLimits(timeout_s=timeout_s))
    records = []
    media = [c for c in cases if c.group == "media" and Path(c.path).is_file()]
    with TestClient(app, raise_server_exceptions=False) as client:
        for k, case in enumerate(media):
            if progress is not None and k:
                progress("server", k, len(media))
            start = time.perf_counter()
            data = Path(case.path).read_bytes()
            r = client.post("/v1/segment", data={"text": "the object", "num_frames": "4"},
                            files={"file": (Path(case.path).name, data, "application/octet-stream")})
            seconds = time.perf_counter() - start
            try:
                body = r.json()
            except ValueError:
                body = None
            message = body.get("error", {}).get("message", "") if isinstance(body, dict) and r.status_code >= 400 else ""
            healthy = client.get("/healthz").status_code == 200
            status = "ok" if r.status_code < 300 else "error" if 400 <= r.status_code < 500 and message else "crash"
            failures = []
            if status == "crash":
                failures.append(f"server: HTTP {r.status_code}: {str(body)[:300]}")
            elif case.expect == "error" and status != "error":
                failures.append("server: accepted an input that must be refused")
            elif case.expect == "ok" and status != "ok":
                failures.append(f"server: refused a valid input: {message}")
            if not healthy:
                failures.append("server: /healthz not 200 afterwards")
            records.append({"case": case, "status": status, "http": r.status_code, "seconds": seconds,
                            "message": message, "failures": failures})
        # a model that raises: that request fails with a 5xx and a message, the next one is served
        files = {"file": ("one.png", _tiny_png(), "image/png")}
        serve_log = logging.getLogger("pixelwise.serve")
        level, serve_log.disabled = serve_log.disabled, True  # the injected traceback is expected: keep it quiet
        try:
            bad = client.post("/v1/segment", data={"text": "raise"}, files=files)
        finally:
            serve_log.disabled = level
        good = client.post("/v1/segment", data={"text": "fine"}, files=files)
        records.append({"case": None, "status": "fault", "http": bad.status_code, "seconds": 0.0,
                        "message": f"model raised; next request HTTP {good.status_code}",
                        "failures": [] if bad.status_code >= 500 and good.status_code == 200
                        and client.get("/healthz").status_code == 200 else
                        [f"server: after a model exception got {bad.status_code} then {good.status_code}"]})
    return records


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()
