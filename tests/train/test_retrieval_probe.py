"""`pixelwise.recipes.retrieval_probe`: linear probes of what the retrieval query and keys carry."""

from __future__ import annotations

import numpy as np
import pytest


def test_linear_probe_reads_what_is_there_and_nothing_else():
    from pixelwise.recipes.retrieval_probe import linear_probe

    rng = np.random.default_rng(0)
    y = list(rng.integers(0, 3, 400))
    x = rng.normal(size=(400, 16))
    told = x.copy()
    told[:, 3] += 8.0 * np.array(y)  # one feature tells the class
    good = linear_probe(told[:300], y[:300], told[300:], y[300:])
    assert good["acc"] >= 0.95 and good["n"] == 100
    blind = linear_probe(x[:300], y[:300], x[300:], y[300:])  # features that tell nothing
    assert blind["acc"] < 0.55 and 0.2 < blind["majority"] < 0.5


@pytest.mark.slow
def test_retrieval_probe_runs_on_the_default_model(tmp_path):
    import pixelwise
    from pixelwise.data.pixelworld.generate import GenConfig, generate
    from pixelwise.recipes.retrieval_probe import KINDS, retrieval_probe

    root = tmp_path / "ref"
    generate(root, GenConfig(split="train", num=40, seed=0, tasks=("referring",)))
    pipe = pixelwise.load()
    result = retrieval_probe(pipe.model.eval(), pipe.processor, root, [root], queries=12, scenes=6)
    assert set(result["query"]) == {f"{k}/{s}" for k in KINDS for s in ("state", "query")}
    assert set(result["key"]) == {f"{k}/{s}" for k in KINDS for s in ("key", "desc")}
    assert all(0.0 <= r["acc"] <= 1.0 and r["n"] > 0 for side in result.values() for r in side.values())
    assert result["key"]["color/key"]["acc"] > result["key"]["color/key"]["majority"]  # keys tell colour (0.99)
