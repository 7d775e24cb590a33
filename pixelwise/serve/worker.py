"""One model, one thread: requests queue to a single worker that owns the pipeline.

A pixel-level VLM holds gigabytes and is not safe to call from several threads at once, so the server keeps one
model in memory and runs jobs one at a time in a dedicated thread. The queue in front of it is bounded: when it is
full a request is refused at once (HTTP 503 + Retry-After) instead of piling up memory and latency. A job whose
client gave up (timeout) before it started is skipped; one already running finishes and its result is dropped —
torch offers no safe way to interrupt a forward pass.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pixelwise.core.errors import PixelwiseError


class QueueFullError(PixelwiseError):
    """The bounded request queue is full: the client should retry after `retry_after` seconds."""

    http_status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ModelWorker:
    """A single worker thread draining a bounded FIFO of jobs; `submit` returns a `concurrent.futures.Future`."""

    def __init__(self, max_queue: int, name: str = "pixelwise-model-worker"):
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self._jobs: queue.Queue[tuple[Future, Callable[..., Any], tuple] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._running = False
        self._started: float | None = None  # perf_counter() when the running job started
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self._mean_s: float | None = None  # moving average of job time, for Retry-After
        self._thread.start()

    # ------------------------------------------------------------------------------------------------ public

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(*args)` for the worker thread; raise `QueueFullError` instead of waiting when full."""
        fut: Future = Future()
        try:
            self._jobs.put_nowait((fut, fn, args))
        except queue.Full:
            raise QueueFullError(
                f"the server is busy: {self.max_queue} request(s) already wait for the model; retry later",
                retry_after=self.retry_after(),
            ) from None
        return fut

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained (at least 1), from the mean job time."""
        per_job = self._mean_s if self._mean_s is not None else 1.0
        return max(1, round(per_job * (self._jobs.qsize() + 1)))

    def running_for(self) -> float:
        """Seconds the current job has been running (0 when idle)."""
        started = self._started
        return 0.0 if started is None else time.perf_counter() - started

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self._jobs.qsize(),
            "running_for_s": round(self.running_for(), 3),
            "max_queue": self.max_queue,
            "running": self._running,
            "completed": self.completed,
            "failed": self.failed,
            "skipped": self.skipped,
            "mean_job_s": None if self._mean_s is None else round(self._mean_s, 4),
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the jobs already queued; waiting jobs that cannot be queued behind the sentinel are cancelled."""
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            self._drain_cancel()
            self._jobs.put_nowait(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------------------------------------ thread

    def _drain_cancel(self) -> None:
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():  # the client already gave up
                self.skipped += 1
                continue
            start = time.perf_counter()
            self._running, self._started = True, start
            failed = False
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 — any failure belongs to this job, never to the thread
                self.failed += 1
                failed = True
                # the traceback's frames hold the job's locals (decoded frames, activations): clear them, so
                # nothing of a failed job stays referenced while the exception travels to its request
                traceback.clear_frames(e.__traceback__)
                fut.set_exception(e)
                del e
            else:
                self.completed += 1
                fut.set_result(result)
                del result
            finally:
                self._running, self._started = False, None
                took = time.perf_counter() - start
                self._mean_s = took if self._mean_s is None else 0.8 * self._mean_s + 0.2 * took
            del fut, fn, args, item
            if failed:
                gc.collect()  # reference cycles of the failed job (exception <-> frames) go now, not at some later gc
