"""Many queries from a manifest: a JSONL file of media + text (+ regions) -> a results JSONL, resumable and
shardable across processes.

One query per line: `{"id": "q1", "media": "clip.mp4", "text": "the red car", "task": "segment"}`; `task` is
`segment` (default) or `ask`; `prompts` (the HTTP API's JSON form, frames index the frames read), `options`
(multiple choice), `num_frames`, `propagate` and `max_new_tokens` are optional; `id` defaults to the line number;
relative media paths are taken relative to the manifest's folder. Each answered query becomes one line of
`OUT/results.jsonl`: `{"id", "media", "task", **Result.to_json()}`, or `{"id", "error": {"type", "message"}}` when the
query itself is wrong (the run goes on). Rerunning skips ids already answered. Under torchrun every rank answers
every N-th query into `OUT/results.rank<r>.jsonl`; rank 0 merges them in manifest order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixelwise.core.errors import FormatError, PixelwiseError
from pixelwise.core.io import atomic_write_text, check_regular_file, parse_json
from pixelwise.core.prompts import prompt_from_json
from pixelwise.pipeline.base import Query

QUERY_KEYS = {"id", "media", "text", "task", "prompts", "options", "num_frames", "propagate", "max_new_tokens"}
MAX_MANIFEST_BYTES = 256 << 20


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The queries of a manifest, each checked (keys, types, unique ids); a FormatError names the line."""
    path = check_regular_file(path, FormatError, MAX_MANIFEST_BYTES)
    queries, ids = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{n}"
        q = parse_json(line, source)
        if not isinstance(q, dict):
            raise FormatError(f"{source}: a query must be a JSON object")
        unknown = sorted(set(q) - QUERY_KEYS)
        if unknown:
            raise FormatError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(QUERY_KEYS))}")
        if not isinstance(q.get("media"), str) or not isinstance(q.get("text"), str):
            raise FormatError(f"{source}: 'media' and 'text' must be strings")
        if q.get("task", "segment") not in ("segment", "ask"):
            raise FormatError(f"{source}: 'task' must be 'segment' or 'ask', got {q.get('task')!r}")
        q = {**q, "id": str(q.get("id", n)), "task": q.get("task", "segment"), "_source": source}
        if q["id"] in ids:
            raise FormatError(f"{source}: id {q['id']!r} appears twice")
        ids.add(q["id"])
        media = Path(q["media"])
        q["media"] = str(media if media.is_absolute() else path.parent / media)
        queries.append(q)
    return queries


def to_query(query: dict[str, Any]) -> Query:
    """A manifest line -> the pipeline's `Query` (a bad prompt or option raises a PixelwiseError naming the line)."""
    source = query["_source"]
    regions = [prompt_from_json(p, f"{source}: prompts[{k}]") for k, p in enumerate(query.get("prompts") or [])]
    settings = {k: query[k] for k in ("num_frames", "propagate", "max_new_tokens") if k in query}
    return Query(query["media"], query["text"], regions or None, task=query["task"], options=query.get("options"),
                 **settings)


def answer_all(pipe: Any, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Queries through the pipeline together (`run_batch`) -> their results lines (a Result's JSON, or the error)."""
    rows: list[dict[str, Any] | None] = [None] * len(queries)
    ready, at = [], []
    for i, q in enumerate(queries):
        try:
            ready.append(to_query(q))
            at.append(i)
        except PixelwiseError as e:
            rows[i] = _error_row(q, e)
    for i, result in zip(at, pipe.run_batch(ready, return_errors=True) if ready else []):
        q = queries[i]
        rows[i] = (_error_row(q, result) if isinstance(result, PixelwiseError)
                   else {"id": q["id"], "media": q["media"], "task": q["task"], **result.to_json()})
    return rows


def _error_row(query: dict[str, Any], e: PixelwiseError) -> dict[str, Any]:
    return {"id": query["id"], "media": query["media"], "error": {"type": type(e).__name__, "message": str(e)}}


def run_manifest(pipe: Any, manifest: str | Path, out_dir: str | Path, rank: int = 0, world_size: int = 1,
                 progress: Callable[[int, int], None] | None = None, batch_size: int = 1) -> dict[str, int]:
    """Answer this rank's share of the manifest's queries not answered yet, appending to its results file;
    `batch_size` queries at a time through `pipe.run_batch`."""
    if batch_size < 1:
        raise PixelwiseError(f"batch_size must be >= 1, got {batch_size}")
    queries = read_manifest(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = answered_ids(out)
    # shard by position in the manifest, then skip what is done: every rank agrees on the split whenever it starts
    todo = [q for q in queries[rank::world_size] if q["id"] not in done]
    part = out / ("results.jsonl" if world_size == 1 else f"results.rank{rank}.jsonl")
    failed = 0
    if part.is_file() and part.stat().st_size and not part.read_bytes().endswith(b"\n"):
        with open(part, "a", encoding="utf-8") as f:
            f.write("\n")  # end a killed run's half line, so the next answer starts a line of its own
    with open(part, "a", encoding="utf-8") as f:
        for k in range(0, len(todo), batch_size):
            for row in answer_all(pipe, todo[k: k + batch_size]):
                failed += "error" in row
                f.write(json.dumps(row) + "\n")
            f.flush()  # a killed run keeps every finished line; a half line is dropped on reading
            if progress is not None:
                progress(min(k + batch_size, len(todo)), len(todo))
    return {"queries": len(queries), "answered": len(todo), "failed": failed,
            "skipped": len(queries[rank::world_size]) - len(todo)}


def answered_ids(out_dir: Path) -> set[str]:
    return {row["id"] for row in _rows(out_dir)}


def _rows(out_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for f in sorted(Path(out_dir).glob("results*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the half-written last line of a killed run: answered again
            if isinstance(row, dict) and "id" in row:
                rows.append(row)
    return rows


def merge_results(manifest: str | Path, out_dir: str | Path) -> Path:
    """One `results.jsonl` in manifest order from every rank's part (the parts are then removed)."""
    out = Path(out_dir)
    order = {q["id"]: k for k, q in enumerate(read_manifest(manifest))}
    rows = {row["id"]: row for row in _rows(out)}
    merged = atomic_write_text(out / "results.jsonl", "".join(
        json.dumps(rows[i]) + "\n" for i in sorted(rows, key=lambda i: order.get(i, len(order)))))
    for f in out.glob("results.rank*.jsonl"):
        f.unlink()
    return merged
