"""Run the hostile-input corpus through the library readers and the CLI; classify every outcome.

An outcome is `ok` (loaded), `error` (a typed `PixelwiseError`; on the CLI: exit code 2 and a one-line `error:`
message) or a failure: `crash` (any other exception, exit code, or a traceback), `hang` (over the time bound),
`payload` (a pickle payload ran), `unexpected` (ok where an error was required, or the reverse).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pixelwise.core.errors import PixelwiseError
from tools.robustness.corpus import Case
from tools.robustness.probes import cli_args, library_call

DEFAULT_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    case: Case
    surface: str  # library | cli
    status: str  # ok | error | crash | hang | payload
    seconds: float
    message: str = ""
    failures: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None  # CLI runs: the subprocess's peak resident memory

    @property
    def passed(self) -> bool:
        return not self.failures


def _judge(out: Outcome) -> Outcome:
    case = out.case
    marker = case.extra.get("marker")
    if marker and Path(marker).exists():
        out.status = "payload"
    expect = case.extra.get(f"{out.surface}_expect", case.expect)  # e.g. `info` reads only a header
    if out.status in ("crash", "hang", "payload"):
        out.failures.append(f"{out.surface}: {out.status}: {out.message[-300:]}")
    elif expect == "error" and out.status != "error":
        out.failures.append(f"{out.surface}: loaded, but a typed error was required")
    elif expect == "ok" and out.status != "ok":
        out.failures.append(f"{out.surface}: refused a valid input: {out.message}")
    return out


def run_library(case: Case) -> Outcome:
    start = time.perf_counter()
    try:
        library_call(case)
        status, msg = "ok", ""
    except PixelwiseError as e:
        status, msg = "error", str(e)
    except Exception as e:  # noqa: BLE001 — this is what the corpus is looking for
        status, msg = "crash", f"{type(e).__name__}: {e}"
    return _judge(Outcome(case, "library", status, time.perf_counter() - start, msg))


def run_cli(case: Case, timeout: float = DEFAULT_TIMEOUT_S) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="pw-robust-") as scratch:
        argv = [sys.executable, "-m", "pixelwise", *cli_args(case, Path(scratch))]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        returncode, rss_kb, err = _run_measured(argv, timeout, env, scratch)
        seconds = time.perf_counter() - start
        if returncode is None:
            return _judge(Outcome(case, "cli", "hang", seconds, f"over {timeout:g}s"))
    err = err.strip()
    if returncode == 0:
        status, msg = "ok", ""
    elif returncode == 2 and err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1:
        status, msg = "error", err[len("error: "):]
    elif returncode == 2 and "Usage:" in err:
        status, msg = "crash", f"usage error: {err[-300:]}"
    else:
        status, msg = "crash", f"exit code {returncode}: {err[-600:]}"
    return _judge(Outcome(case, "cli", status, seconds, msg, peak_rss_mb=rss_kb / 1024))


def _run_measured(argv: list[str], timeout: float, env: dict, cwd: str) -> tuple[int | None, int, str]:
    """Run a command; (exit code or None on timeout, its peak RSS in KiB from wait4's rusage, stderr)."""
    with open(Path(cwd) / ".stderr", "w+") as err, open(os.devnull, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = time.perf_counter() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return None, usage.ru_maxrss, ""
            time.sleep(0.02)
        err.seek(0)
        return proc.returncode, usage.ru_maxrss, err.read()


Progress = Callable[[str, int, int], None]  # (stage, runs done, runs in the stage)


def run_corpus(cases: list[Case], cli: bool = True, library: bool = True, workers: int = 2,
               timeout: float = DEFAULT_TIMEOUT_S, progress: Progress | None = None) -> list[Outcome]:
    """Every case through the library (here) and the CLI (subprocesses, `workers` at a time). `progress(stage, done,
    total)` is called after each run."""
    outcomes: list[Outcome] = []
    tick = progress or (lambda stage, done, total: None)
    if library:
        for k, case in enumerate(cases):
            outcomes.append(run_library(case))
            marker = case.extra.get("marker")
            if marker:
                Path(marker).unlink(missing_ok=True)  # a failed case must not make the next ones fail
            tick("library", k + 1, len(cases))
    if cli:
        cli_cases = [c for c in cases if not c.extra.get("marker")]
        done = 0
        # payload cases one at a time, so a written marker is attributed to the right case
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for outcome in pool.map(lambda c: run_cli(c, timeout), cli_cases):
                outcomes.append(outcome)
                done += 1
                tick("CLI", done, len(cases))
        for case in cases:
            if case.extra.get("marker"):
                outcomes.append(run_cli(case, timeout))
                Path(case.extra["marker"]).unlink(missing_ok=True)
                done += 1
                tick("CLI", done, len(cases))
    return outcomes
