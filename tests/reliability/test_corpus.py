"""The generated hostile corpus through the library, a sample of it through the CLI, its media through the server."""

from __future__ import annotations

import pytest

from tools.robustness.corpus import build_corpus
from tools.robustness.run import run_cli, run_library


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), seed=0)


def test_corpus_covers_every_group(corpus):
    groups = {c.group for c in corpus}
    assert groups == {"media", "result-json", "dataset-json", "checkpoint"}
    assert sum(c.expect == "error" for c in corpus) > 50 and sum(c.expect == "ok" for c in corpus) > 10


def test_library_readers_never_crash(corpus):
    failures = []
    for case in corpus:
        out = run_library(case)
        failures += [(case.name, case.kind, f) for f in out.failures]
        if out.status == "error":
            assert out.message  # a message, never an empty error
    assert failures == []


CLI_KINDS = {"oversize header (bomb)", "truncated video", "zero-frame video", "random bytes", "CMYK JPEG",
             "variable-frame-rate video", "RLE of the wrong size", "negative frame id", "empty frame list",
             "valid result", "valid dataset", "pickle payload (.bin)", "tensor larger than declared",
             "config: token id outside the vocabulary"}


@pytest.mark.slow
def test_cli_exit_codes(corpus):
    """A case of each listed class through the real command line: exit 0, or exit 2 with one line, in time."""
    from concurrent.futures import ThreadPoolExecutor

    picked, seen = [], set()
    for c in corpus:
        if c.kind in CLI_KINDS and (c.group, c.kind) not in seen:
            seen.add((c.group, c.kind))
            picked.append(c)
    assert {c.kind for c in picked} == CLI_KINDS
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda c: run_cli(c, timeout=60), picked))
    assert [(o.case.name, f) for o in outcomes for f in o.failures] == []


def test_cli_refuses_payload_and_broken_checkpoints(corpus):
    cases = [c for c in corpus if c.group == "checkpoint" and c.kind in (
        "torch.save payload with --allow-pickle", "truncated safetensors", "tensor larger than declared")][:3]
    assert len(cases) == 3
    for case in cases:
        out = run_cli(case, timeout=60)
        assert out.status == "error" and out.failures == [], out.message


def test_server_answers_4xx_and_stays_healthy(corpus):
    pytest.importorskip("fastapi")
    from tools.robustness.server import run_media_through_server, server_available

    if not server_available():
        pytest.skip("pixelwise.serve not importable")
    records = run_media_through_server(corpus, timeout_s=60)
    failures = [(r["case"].name if r["case"] else "model fault", f) for r in records for f in r["failures"]]
    assert failures == []
    assert any(r["http"] == 413 for r in records)  # the decompression-bomb header
    assert records[-1]["status"] == "fault"  # a model exception was injected and survived
