"""Start a real uvicorn server for the API tests: the real pipeline, optionally behind a test wrapper.

The wrapper passes every call through to the loaded model, except that a request text containing `RAISE-IN-MODEL`
raises inside the model call (to check that the server answers cleanly and keeps serving) and `SLEEP-IN-MODEL:<s>`
holds the worker for <s> seconds first (to fill the queue and run past the timeout deterministically).

    python tests/serve/server_main.py --model CKPT --port N [--media-root DIR] [limits as `pixelwise serve`]
"""

from __future__ import annotations

import argparse
import functools
import re
import time
from pathlib import Path

import uvicorn

from pixelwise import pipeline
from pixelwise.serve.api import create_app
from pixelwise.serve.limits import ServeLimits


class TriggerWrapper:
    """The real pipeline with two test triggers in the request text (see the module docstring)."""

    def __init__(self, pipe):
        self.pipe = pipe
        # show the wrapped methods' signatures (the server looks at what segment() accepts)
        self.segment = functools.update_wrapper(functools.partial(TriggerWrapper.segment, self), pipe.segment)
        self.ask = functools.update_wrapper(functools.partial(TriggerWrapper.ask, self), pipe.ask)

    def _trigger(self, text: str) -> None:
        m = re.search(r"SLEEP-IN-MODEL:([0-9.]+)", text)
        if m:
            time.sleep(float(m.group(1)))
        if "RAISE-IN-MODEL" in text:
            raise RuntimeError("deliberate failure inside the model (test trigger)")

    def segment(self, media, text, *args, **kwargs):
        self._trigger(text)
        return self.pipe.segment(media, text, *args, **kwargs)

    def ask(self, media, question, *args, **kwargs):
        self._trigger(question)
        return self.pipe.ask(media, question, *args, **kwargs)

    def info(self):
        return self.pipe.info()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--media-root", type=Path, default=None)
    ap.add_argument("--max-upload-bytes", type=int, default=1 << 20)
    ap.add_argument("--max-pixels", type=int, default=512 * 512)
    ap.add_argument("--max-source-frames", type=int, default=40)
    ap.add_argument("--max-num-frames", type=int, default=8)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    limits = ServeLimits(max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels,
                         max_source_frames=args.max_source_frames, max_num_frames=args.max_num_frames,
                         max_queue=args.max_queue, timeout_s=args.timeout)
    pipe = TriggerWrapper(pipeline.load(args.model, device="cpu"))
    app = create_app(pipe, limits, media_root=args.media_root)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
