"""Parity with the official DAVIS code, when a checkout of it is available (the project never ships official code).

    git clone https://github.com/davisvideochallenge/davis2017-evaluation /tmp/davis2017-evaluation
    pip install scikit-image   # the official F imports skimage.morphology.disk
    DAVIS2017_EVAL=/tmp/davis2017-evaluation pytest tests/eval/test_official_parity.py

Skipped otherwise. Compares J and F with `==` on random and adversarial masks (sizes 1×1 to 720×1280, bool and
0/1/2/255 uint8 inputs, empty/full/border/single-pixel/shifted masks, several tolerances including an even-sized
disk).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from pixelwise.eval import metrics as M

ROOT = os.environ.get("DAVIS2017_EVAL")
if not ROOT:
    pytest.skip("set DAVIS2017_EVAL to a davis2017-evaluation checkout", allow_module_level=True)
pytest.importorskip("skimage")
sys.path.insert(0, ROOT)
official = pytest.importorskip("davis2017.metrics")

SIZES = [(1, 1), (1, 9), (9, 1), (2, 2), (5, 5), (7, 13), (31, 17), (64, 48), (100, 177), (480, 854), (720, 1280)]


def _pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    kind = rng.integers(0, 8)
    if kind == 0:
        a, b = rng.random((h, w)) < rng.random(), rng.random((h, w)) < rng.random()
    elif kind == 1:
        a, b = np.zeros((h, w), bool), rng.random((h, w)) < 0.01
    elif kind == 2:
        a, b = np.ones((h, w), bool), rng.random((h, w)) < 0.5
    elif kind == 3:
        a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
        a[rng.integers(0, h):, rng.integers(0, w):] = True
        b[: rng.integers(0, h + 1), rng.integers(0, w):] = True
    elif kind == 4:
        a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
        a[rng.integers(h), rng.integers(w)] = True
        b[rng.integers(h), rng.integers(w)] = True
    elif kind == 5:
        yy, xx = np.mgrid[0:h, 0:w]
        r = rng.random() * max(h, w) / 2 + 0.5
        a = (yy - rng.random() * h) ** 2 + (xx - rng.random() * w) ** 2 <= r * r
        b = np.roll(a, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    elif kind == 6:
        a = np.zeros((h, w), bool)
        b = a.copy()
    else:
        a = rng.random((h, w)) < 0.5
        b = a.copy()
        b[rng.integers(h), rng.integers(w)] ^= True
    if rng.random() < 0.5:
        scale = rng.choice([1, 2, 255])
        a, b = a.astype(np.uint8) * scale, b.astype(np.uint8) * scale
    return a, b


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_j_and_f_equal_official(seed):
    rng = np.random.default_rng(seed)
    for h, w in SIZES:
        for _ in range(200 if h * w < 20000 else 5):
            gt, pred = _pair(rng, h, w)
            for th in (0.008, 1, 2.5, 3):
                assert M.f_scores(pred, gt, bound_th=th)[0] == official.db_eval_boundary(gt, pred, bound_th=th)
            assert M.j_score(pred, gt) == official.db_eval_iou(gt, pred)
