"""The HTTP API: `POST /v1/segment`, `POST /v1/ask`, `GET /v1/model`, `GET /healthz` (FastAPI, served by uvicorn).

Requests carry the media as an uploaded file (multipart/form-data, field `file`) or as a server-side `path` under
the media root (multipart field or JSON body); text, prompts and sampling go in the same form/JSON. The answer is
`Result.to_json()` (answer, objects with per-frame COCO RLE masks, frame indices, size) plus timings.

Every failure is JSON `{"error": {"status", "type", "message"}}`: the user's mistakes are 4xx with a message
naming the field or limit (413 for sizes, 403 for paths outside the root, 422 for everything malformed), a full
queue or an expired request is 503 with Retry-After, and an exception inside the model is a clean 500 for that
request only — the worker thread survives it and the next request is served normally.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelwise import __version__
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.io import parse_json
from pixelwise.core.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from pixelwise.serve.limits import BadRequestError, RequestTooLargeError, ServeLimits, resolve_media_path
from pixelwise.serve.service import AskRequest, Pipeline, SegmentRequest, check_request, parse_request, run_task
from pixelwise.serve.worker import ModelWorker, QueueFullError

log = logging.getLogger("pixelwise.serve")

# multipart overhead allowed on top of the file itself (boundaries, headers, the small text fields)
_FORM_OVERHEAD = 256 << 10


# ------------------------------------------------------------------------------------------------ body limit


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length up front and by counting while streaming.

    Counting matters for chunked uploads, which carry no Content-Length: the limit holds before the multipart
    parser spools anything to disk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = _error_response(RequestTooLargeError(self._message(int(declared))))
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLargeError(self._message(seen, streamed=True))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, size: int, streamed: bool = False) -> str:
        what = f"more than {size}" if streamed else str(size)
        return f"request body of {what} bytes exceeds the upload limit of {self.max_bytes - _FORM_OVERHEAD} bytes"


# ------------------------------------------------------------------------------------------------ responses


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ObjectOut(BaseModel):
    id: int
    label: str | None
    span: list[int] | None
    score: float | None
    box: list[float] | None
    masks: list[dict[str, Any] | None]


class ResultResponse(BaseModel):
    request_id: str
    task: str
    model: str | None
    answer: str
    size: list[int]
    frame_indices: list[int]
    objects: list[ObjectOut]
    timings: dict[str, float]


def _error_response(exc: PixelwiseError, status: int | None = None, headers: dict[str, str] | None = None
                    ) -> JSONResponse:
    status = status or exc.http_status
    body = {"error": {"status": status, "type": type(exc).__name__, "message": str(exc)}}
    return JSONResponse(body, status_code=status, headers=headers)


class RequestTimeoutError(PixelwiseError):
    """The request did not finish within the server's per-request time limit."""

    http_status = 503


class ModelFailedError(PixelwiseError):
    """An unexpected exception inside the model: a bug or a resource problem, reported for this request only."""

    http_status = 500


# ------------------------------------------------------------------------------------------------ request parsing


def _safe_suffix(filename: str | None) -> str:
    """Keep a known media extension of the uploaded name (the decoder uses it); drop everything else."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS else ""


async def _read_request(request: Request, model: type[AskRequest], limits: ServeLimits, media_root: Path | None
                        ) -> tuple[AskRequest, Path, Path | None, str | None]:
    """Parse a JSON or multipart request into (fields, media path, temp dir to delete afterwards, upload name)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    upload = None
    if ctype == "application/json":
        raw = await request.body()
        data = parse_json(raw, "body", BadRequestError)
        if not isinstance(data, dict):
            raise BadRequestError("body: the JSON body must be an object")
    elif ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=1 << 20)
        except RequestTooLargeError:
            raise
        except Exception as e:  # noqa: BLE001 — the multipart parser's own errors: a malformed body
            detail = getattr(e, "detail", None) or str(e)
            raise BadRequestError(f"body: malformed multipart form ({detail})") from None
        data = {}
        for key, value in form.multi_items():
            if key == "file":
                if isinstance(value, str):
                    raise BadRequestError("file: must be an uploaded file, not a text field")
                upload = value
            elif not isinstance(value, str):
                raise BadRequestError(f"{key}: only the 'file' field may carry a file")
            elif key in data:
                raise BadRequestError(f"{key}: given more than once")
            else:
                data[key] = value
        if "prompts" in data:
            text = data["prompts"]
            data["prompts"] = parse_json(text, "prompts", BadRequestError) if text.strip() else []
    else:
        raise BadRequestError(
            f"Content-Type '{ctype or '(none)'}' is not accepted: send multipart/form-data (with a 'file') or "
            "application/json (with a 'path')"
        )
    req = check_request(parse_request(model, data), limits)
    if (upload is None) == (req.path is None):
        raise BadRequestError("give exactly one media source: an uploaded 'file' or a server-side 'path'")
    if req.path is not None:
        return req, resolve_media_path(req.path, media_root), None, None
    tmpdir = Path(tempfile.mkdtemp(prefix="pixelwise-upload-"))
    try:
        target = tmpdir / f"upload{_safe_suffix(upload.filename)}"
        with target.open("wb") as f:
            await asyncio.to_thread(shutil.copyfileobj, upload.file, f, 1 << 20)
        if target.stat().st_size == 0:
            raise BadRequestError("file: the uploaded file is empty")
        if target.stat().st_size > limits.max_upload_bytes:
            raise RequestTooLargeError(
                f"file: {target.stat().st_size} bytes exceeds the upload limit of {limits.max_upload_bytes} bytes")
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    finally:
        await upload.close()
    return req, target, tmpdir, upload.filename


# ------------------------------------------------------------------------------------------------ the app


def _request_body_schema(model: type[AskRequest]) -> dict[str, Any]:
    """OpenAPI request body: the JSON model, and the same fields as a multipart form with a file."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    form = {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "image or video (instead of 'path')"},
            **{k: v for k, v in schema["properties"].items() if k != "prompts"},
            "prompts": {"type": "string", "description": "JSON list of prompts, as in the JSON body"},
        },
        "required": ["text"],
    }
    return {"required": True, "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}}}


_ERRORS = {code: {"model": ErrorResponse} for code in (403, 413, 422, 500, 503)}


def create_app(pipeline: Pipeline, limits: ServeLimits | None = None, media_root: str | Path | None = None) -> FastAPI:
    """A FastAPI app serving one loaded pipeline through a single worker thread."""
    limits = limits or ServeLimits()
    root = Path(media_root).resolve() if media_root is not None else None
    info = dict(pipeline.info())
    model_name = str(info.get("name") or info.get("family") or "model")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = ModelWorker(limits.max_queue)
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.worker.close)

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc load their scripts from the server, not a CDN
    app = FastAPIOffline(title="pixelwise", version=__version__, lifespan=lifespan,
                         description="Pixel-level vision-language models over HTTP: segment and ask with masks.")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_upload_bytes + _FORM_OVERHEAD)

    @app.exception_handler(PixelwiseError)
    async def _pixelwise_error(_request: Request, exc: PixelwiseError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFullError) else None
        return _error_response(exc, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": {"status": exc.status_code, "type": "HTTPError", "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def _run(request: Request, task: str, model: type[AskRequest]) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        start = time.perf_counter()
        req, media, tmpdir, upload_name = await _read_request(request, model, limits, root)
        worker: ModelWorker = request.app.state.worker
        try:
            queued_at = time.perf_counter()
            shown = req.path if req.path is not None else f"uploaded file '{_display_name(upload_name)}'"
            fut = worker.submit(_timed_task, pipeline, task, media, shown, req, limits)
        except BaseException:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        if tmpdir is not None:  # delete the upload once the job is over, even if this request stops waiting
            fut.add_done_callback(lambda _f: shutil.rmtree(tmpdir, ignore_errors=True))
        try:
            result, timings = await _wait_unless_disconnected(request, fut, limits.timeout_s)
        except ClientGoneError:
            fut.cancel()  # not started yet: the worker skips it; running: its result is dropped
            return JSONResponse({"error": {"status": 499, "type": "ClientGoneError",
                                           "message": "the client disconnected"}}, status_code=499)
        except TimeoutError:
            exc = RequestTimeoutError(
                f"request did not finish within the server's limit of {limits.timeout_s:g} s "
                "(the model is busy or the input is long); retry later or with fewer frames")
            return _error_response(exc, headers={"Retry-After": str(worker.retry_after())})
        except PixelwiseError:
            raise
        except MemoryError:
            exc = RequestTimeoutError("the model ran out of memory on this input; retry with fewer frames")
            return _error_response(exc, headers={"Retry-After": str(worker.retry_after())})
        except Exception as e:
            log.exception("request %s: %s failed inside the model", request_id, task)
            raise ModelFailedError(
                f"the model failed on this request ({type(e).__name__}: {e}); request id {request_id}") from None
        body = result.to_json()
        body["timings"] = {
            **{k: float(v) for k, v in body.get("timings", {}).items()},
            "queue_s": timings["started"] - queued_at,
            "inspect_s": timings["inspect_s"],
            "run_s": timings["model_s"],
            "total_s": time.perf_counter() - start,
        }
        body = {"request_id": request_id, "task": task, "model": model_name, **body}
        return JSONResponse(body, headers={"X-Request-ID": request_id})

    @app.post("/v1/segment", response_model=ResultResponse, responses=_ERRORS,
              openapi_extra={"requestBody": _request_body_schema(SegmentRequest)},
              summary="Segment what a referring expression (optionally with point/box/mask prompts) describes")
    async def segment(request: Request) -> JSONResponse:
        return await _run(request, "segment", SegmentRequest)

    @app.post("/v1/ask", response_model=ResultResponse, responses=_ERRORS,
              openapi_extra={"requestBody": _request_body_schema(AskRequest)},
              summary="Answer a question about the media and the regions given as prompts")
    async def ask(request: Request) -> JSONResponse:
        return await _run(request, "ask", AskRequest)

    @app.get("/v1/model", summary="The loaded model, the server's limits and the queue")
    async def model_info(request: Request) -> dict[str, Any]:
        return {"model": _jsonable(info), "limits": limits.to_json(),
                "media_root": str(root) if root is not None else None, "queue": request.app.state.worker.stats()}

    @app.get("/healthz", summary="Liveness: 200 while the model worker runs")
    async def healthz(request: Request) -> JSONResponse:
        worker: ModelWorker = request.app.state.worker
        if not worker.alive:
            return JSONResponse({"status": "worker stopped", "queue": worker.stats()}, status_code=503)
        busy = worker.running_for()
        if busy > limits.timeout_s:  # a job past the request timeout: new requests will time out behind it
            return JSONResponse({"status": "degraded", "reason": f"a job has been running for {busy:.0f} s, over the "
                                 f"{limits.timeout_s:g} s request timeout", "queue": worker.stats()}, status_code=503)
        return JSONResponse({"status": "ok", "queue": worker.stats()})

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (SegmentRequest, AskRequest):
                components.update(model.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = _openapi  # type: ignore[method-assign]
    return app


def _display_name(filename: str | None) -> str:
    name = Path(filename or "").name
    return "".join(c for c in name if c.isprintable())[:100] or "(unnamed)"


class ClientGoneError(Exception):
    """The client closed the connection while its job waited."""


async def _wait_unless_disconnected(request: Request, fut: Any, timeout: float, poll: float = 0.25) -> Any:
    """The job's result, waiting at most `timeout` s; `ClientGoneError` as soon as the client disconnects (checked
    every `poll` s), so a queued job of a client that left is dropped before it runs."""
    wrapped = asyncio.wrap_future(fut)
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            wrapped.cancel()
            raise TimeoutError
        done, _ = await asyncio.wait({wrapped}, timeout=min(poll, left))
        if done:
            return wrapped.result()
        if await request.is_disconnected():
            wrapped.cancel()
            raise ClientGoneError


def _timed_task(pipe: Pipeline, task: str, media: Path, shown: str, req: AskRequest, limits: ServeLimits):
    """Run one request in the worker thread; error messages name the media as the client did, not by its
    location on the server (a temp file or the resolved path)."""
    started = time.perf_counter()
    try:
        result, timings = run_task(pipe, task, media, req, limits)
    except PixelwiseError as e:
        message = str(e).replace(str(media), shown)
        if message == str(e):
            raise
        try:
            renamed = type(e)(message)
        except TypeError:
            raise e from None
        raise renamed from None
    return result, {**timings, "started": started}


def _jsonable(value: Any) -> Any:
    """pipe.info() may hold paths, dtypes, devices: make it JSON-safe without losing what it says."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
