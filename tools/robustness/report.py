"""`python -m tools.robustness report`: build the corpus, run it everywhere, inject faults, write `docs/robustness.md`."""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pixelwise.core.io import atomic_write_text

# Property / fuzz tests in tests/reliability and tests/core: (input class, test, examples per CI run).
PROPERTY_TESTS = [
    ("masks: compressed/uncompressed RLE round trip, any size incl. 0xN", "test_properties.py::test_rle_round_trip", 60),
    ("masks: rle_decode on arbitrary dicts/strings/lists", "test_properties.py::test_rle_decode_junk", 150),
    ("masks: IoU symmetry, bounds, empty/empty = 1", "test_properties.py::test_iou_invariants", 60),
    ("metrics: J&F symmetric in J, bounded, empty cases", "test_properties.py::test_jf_invariants", 40),
    ("prompts: CLI point/box syntax on arbitrary text", "test_properties.py::test_prompt_parsing_junk", 200),
    ("prompts: points/boxes outside, negative, NaN, past the last frame", "test_properties.py::test_prompt_validation",
     150),
    ("result JSON: random mutations through Result.from_json", "test_properties.py::test_result_json_mutations", 80),
    ("safetensors: random header/byte mutations", "test_checkpoint_safety.py::test_safetensors_mutations", 60),
    ("media: random byte mutations of PNG/JPEG/WebP/GIF/BMP/MP4/WebM/AVI", "test_media_fuzz.py::test_media_mutations",
     40),
]


def _limits() -> list[tuple[str, str, str, str]]:
    """(limit, where, environment variable, default) read from the code, so the table never goes stale."""
    from pixelwise.core.checkpoint import DEFAULT_MAX_CHECKPOINT_BYTES, MAX_HEADER_BYTES
    from pixelwise.core.media import MediaLimits

    m = MediaLimits()
    rows = [
        ("pixels per frame", "core.media (CLI, library, readers)", "PIXELWISE_MAX_PIXELS", f"{m.max_pixels:,}"),
        ("frames per clip", "core.media", "PIXELWISE_MAX_FRAMES", f"{m.max_frames:,}"),
        ("bytes per media file", "core.media", "PIXELWISE_MAX_BYTES", f"{m.max_bytes:,}"),
        ("bytes per checkpoint file", "core.checkpoint", "PIXELWISE_MAX_CHECKPOINT_BYTES",
         f"{DEFAULT_MAX_CHECKPOINT_BYTES:,}"),
        ("safetensors header bytes", "core.checkpoint", "—", f"{MAX_HEADER_BYTES:,}"),
        ("PIL decompression bomb", "PIL (before our pixel check)", "—", "2 x PIL.Image.MAX_IMAGE_PIXELS"),
    ]
    try:
        from pixelwise.serve.limits import ServeLimits

        s = ServeLimits()
        env = {"max_upload_bytes": "PIXELWISE_SERVE_MAX_UPLOAD_BYTES", "max_pixels": "PIXELWISE_SERVE_MAX_PIXELS",
               "max_source_frames": "PIXELWISE_SERVE_MAX_SOURCE_FRAMES", "max_num_frames": "PIXELWISE_SERVE_MAX_NUM_FRAMES",
               "max_decoded_bytes": "PIXELWISE_SERVE_MAX_DECODED_BYTES", "max_queue": "PIXELWISE_SERVE_MAX_QUEUE",
               "timeout_s": "PIXELWISE_SERVE_TIMEOUT_S"}
        for k, v in s.to_json().items():
            rows.append((f"server: {k}", "serve.limits (per request)", env.get(k, "— (ServeLimits field)"), f"{v:,}"))
    except ImportError:
        pass
    return rows


def _fault_rows(work: Path) -> list[dict[str, Any]]:
    from tools.robustness import faults

    rows = []
    start = time.perf_counter()
    r = faults.train_kill_resume(work / "train", steps=40, kills=5)
    c, k = r["clean"], r["killed"]
    ok = (c["losses"] == k["losses"] and faults.same_weights(c["weights"], k["weights"]) and k["all_loadable"]
          and not k["leftovers"] and k["step"] == c["step"])
    rows.append({"fault": f"training (pixelwise.train.state, 30 steps, checkpoint each step): SIGKILL x{r['kills']} "
                          "at random moments after a checkpoint appeared, then resume",
                 "check": "same per-step losses and bit-identical final weights as an uninterrupted run; every "
                          "checkpoint on disk loadable; no temp leftovers",
                 "result": "pass" if ok else "FAIL", "seconds": time.perf_counter() - start})
    start = time.perf_counter()
    e = faults.eval_kill_resume(work / "eval", kills=3)
    clean, killed = e["clean"], e["killed"]
    collapsed = [s for i, s in enumerate(killed["starts"]) if i == 0 or killed["starts"][i - 1] != s]
    redone = len(killed["starts"]) - len(set(killed["starts"]))
    ok = (clean["report"]["metrics"] == killed["report"]["metrics"]
          and clean["report"]["per_sample"] == killed["report"]["per_sample"]
          and collapsed == clean["starts"] and redone <= killed["kills"])
    rows.append({"fault": f"evaluation (eval.runner.run, MeViS layout, {len(clean['starts'])} expressions): "
                          f"SIGKILL x{killed['kills']} mid-prediction, then resume",
                 "check": "identical metrics and per-sample scores; no sample lost; only the sample in flight at a "
                          f"kill is predicted again ({redone} re-done for {killed['kills']} kills)",
                 "result": "pass" if ok else "FAIL", "seconds": time.perf_counter() - start})
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(out)


def generate_report(out: str | Path, seed: int = 0, scale: int = 1, workers: int = 2, timeout: float = 60.0,
                    keep: str | Path | None = None, faults: bool = True, progress: Any = None) -> dict[str, Any]:
    """Build the corpus, run it through the library, the CLI and the server (and the fault injections), write the
    markdown report. `progress(stage, done, total)` is told how far each stage is."""
    from tools.robustness.corpus import build_corpus
    from tools.robustness.run import run_corpus
    from tools.robustness.server import run_media_through_server, server_available

    started = time.perf_counter()
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="pixelwise-robustness-"))
    try:
        cases = build_corpus(work / "corpus", seed=seed, scale=scale)
        outcomes = run_corpus(cases, workers=workers, timeout=timeout, progress=progress)
        server = run_media_through_server(cases, timeout, progress) if server_available() else None
        fault_rows = _fault_rows(work / "faults") if faults else []
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)

    by_kind: dict[tuple[str, str], Counter] = defaultdict(Counter)
    cost: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])  # slowest CLI s, peak CLI RSS MiB
    for o in outcomes:
        key = (o.case.group, o.case.kind)
        if o.surface == "cli":
            cost[key][0] = max(cost[key][0], o.seconds)
            cost[key][1] = max(cost[key][1], o.peak_rss_mb or 0.0)
        by_kind[key]["cases" if o.surface == "library" else "_"] += 1
        by_kind[key][f"{o.surface}:{o.status}"] += 1
    if server:
        for rec in server:
            if rec["case"] is not None:
                by_kind[(rec["case"].group, rec["case"].kind)][f"server:{rec['status']}"] += 1
    failures = [(o.case.name, f) for o in outcomes for f in o.failures]
    if server:
        failures += [(rec["case"].name if rec["case"] else "model fault", f) for rec in server for f in rec["failures"]]
    failures += [(r["fault"], "fault injection failed") for r in fault_rows if r["result"] != "pass"]
    slowest = max((o.seconds for o in outcomes if o.surface == "cli"), default=0.0)

    def cell(c: Counter, surface: str) -> str:
        parts = [f"{c[f'{surface}:{s}']} {s}" for s in ("ok", "error", "crash", "hang", "payload") if c[f"{surface}:{s}"]]
        return ", ".join(parts) or "—"

    kind_rows = [[g, k, c["cases"], cell(c, "library"), cell(c, "cli"), cell(c, "server") if server else "n/a",
                  f"{cost[(g, k)][0]:.1f}", f"{cost[(g, k)][1]:.0f}"]
                 for (g, k), c in sorted(by_kind.items())]
    n_runs = len(outcomes) + (len(server) if server else 0)
    lines = [
        "# Robustness report",
        "",
        "Generated by `python -m tools.robustness report -o docs/robustness.md` (regenerate with that one command; "
        f"`--seed {seed} --scale {scale}` made this one). Nothing here is edited by hand.",
        "",
        f"**{len(cases)} corpus cases, {n_runs} runs (library, CLI{', server' if server else ''}), "
        f"{len(failures)} failures.** Slowest CLI case: {slowest:.1f} s (bound: {timeout:g} s). "
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {time.perf_counter() - started:.0f} s "
        "in all.",
        "",
        "## What every input must do",
        "",
        "- A typed `PixelwiseError` whose message names the input: exit code 2 and one `error: ...` line on the CLI, "
        "an HTTP 4xx with a JSON `error.message` from the server (which stays healthy), an exception of that type "
        "from the library. Or a defined clamp (below). Never another exception, a traceback, a hang, or code "
        "execution.",
        "- `expect`: **error** cases must be refused, **ok** cases (valid edge cases) must load, **any** cases "
        "(random mutations that may still be valid) may do either — but only either.",
        "",
        "## Corpus: input classes and outcomes",
        "",
        "Each case goes through the library (`load_media`, `Result.load`, the benchmark reader + ground-truth "
        "decoding + prompt validation + an oracle predict/score run, the checkpoint check), the CLI (`pixelwise info`, `pixelwise overlay`, "
        "`pixelwise eval --model oracle`, `pixelwise robustness check-checkpoint`) in a subprocess with a time bound"
        + (", and media files are also uploaded to the HTTP server (`/v1/segment`, stub model that decodes the "
           "frames), with `/healthz` checked after each." if server else "; the HTTP server was not importable.") ,
        "",
        "The last two columns are what the worst case of each class costs the CLI now (slowest run, peak resident "
        "memory of the `pixelwise` process, Python and torch included): a regression shows up as a number.",
        "",
        _table(["group", "input class", "cases", "library", "CLI", "server", "CLI s (max)", "CLI peak RSS MiB"],
               kind_rows),
        "",
        "## Property and fuzz tests (hypothesis)",
        "",
        "Run in CI with the example counts below; `PIXELWISE_FUZZ_SCALE=20 pytest tests/reliability` multiplies them.",
        "",
        _table(["input class", "test (tests/reliability/)", "examples"], [list(r) for r in PROPERTY_TESTS]),
        "",
        "## Faults injected",
        "",
        _table(["fault", "check", "result", "seconds"],
               [[r["fault"], r["check"], r["result"], f"{r['seconds']:.0f}"] for r in fault_rows])
        if fault_rows else "(skipped in this run)",
        "",
        "Also covered by tests: pickle payloads (plain pickle, `torch.save` zip) are refused without `--allow-pickle` "
        "and refused by `weights_only=True` with it, and the file the payload would write never appears; dataset "
        "pickles (RefCOCO `refs(unc).p`, VISA `mask_dict.pkl`) go through a data-only unpickler that refuses every "
        "global."
        + (" The server answered a request whose model raised with a 5xx and served the next request." if server else ""),
        "",
        "## Limits and their defaults",
        "",
        "Every limit is checked before the work it protects (header before pixels, safetensors header before "
        "tensors, file size before reading).",
        "",
        _table(["limit", "where", "environment variable", "default"], [list(r) for r in _limits()]),
        "",
        "Tokens generated and request time are bounded per family (`max_new_tokens` of each pipeline) and by the "
        "server (`timeout_s`, 504 with Retry-After).",
        "",
        "## Defined clamps (accepted, not refused)",
        "",
        "- 16-bit PNGs are scaled to 8 bits by their maximum; palette and RGBA images are composited on black; CMYK "
        "and grayscale JPEGs are converted to RGB; EXIF orientation is applied.",
        "- Videos: frames are decoded in presentation order; a variable-frame-rate video reports its average rate; "
        "a display-rotation tag is not applied (masks refer to the stored frame orientation).",
        "- A file with a wrong or missing extension is read by content (image first, then video).",
        "- Empty RLE masks in a result (`null`) mean an empty frame.",
        "",
        "## Determinism",
        "",
        "Same input, same seed, same machine: same masks and text (tested: `tests/reliability/test_determinism.py`, "
        "and the training resume above is bit-identical). Across machines: CPU and GPU kernels differ in float "
        "summation order (matmul, convolution, attention), so logits differ in the last bits; a mask pixel or a "
        "greedy token exactly at a tie can flip. GPU runs are only repeatable with "
        "`torch.use_deterministic_algorithms(True)` and `CUBLAS_WORKSPACE_CONFIG=:4096:8`; bfloat16 widens the "
        "differences. Video decoding (FFmpeg) and JPEG decoding (libjpeg-turbo) versions can change pixel values "
        "by a few levels.",
        "",
        "## Failures",
        "",
        _table(["case", "failure"], [[n, f] for n, f in failures]) if failures else "None.",
        "",
    ]
    atomic_write_text(out, "\n".join(lines))
    return {"cases": len(cases), "runs": n_runs, "failures": len(failures), "failure_list": failures}
