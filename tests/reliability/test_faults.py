"""SIGKILL at random moments, then resume: no corrupted file, no lost or duplicated samples, identical results."""

from __future__ import annotations

import pytest

from tools.robustness import faults


@pytest.mark.slow
def test_training_killed_and_resumed_matches_clean_run(tmp_path):
    r = faults.train_kill_resume(tmp_path, steps=24, kills=3, seed=1)
    clean, killed = r["clean"], r["killed"]
    assert r["kills"] == 3
    assert killed["step"] == clean["step"] == 24
    assert killed["losses"] == clean["losses"]  # every step's loss, exactly
    assert len(killed["losses"]) == 24
    assert faults.same_weights(killed["weights"], clean["weights"])  # bit-identical
    assert killed["all_loadable"] and killed["leftovers"] == []


def test_eval_killed_and_resumed_loses_and_redoes_nothing(tmp_path):
    r = faults.eval_kill_resume(tmp_path, kills=2, delay=0.1, num=8, seed=2)
    clean, killed = r["clean"], r["killed"]
    assert killed["kills"] == 2
    assert clean["report"]["metrics"] == killed["report"]["metrics"]
    assert clean["report"]["per_sample"] == killed["report"]["per_sample"]
    assert 0 < clean["report"]["metrics"]["J"] < 100  # a real score, not the oracle's trivial 100
    starts = killed["starts"]
    # only the sample in flight at a kill starts again, right after the restart; nothing finished is redone
    collapsed = [s for i, s in enumerate(starts) if i == 0 or starts[i - 1] != s]
    assert collapsed == clean["starts"]
    assert len(starts) - len(set(starts)) <= killed["kills"]
