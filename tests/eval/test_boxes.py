"""`pixelworld-boxes`: grounding and detection boxes from text, scored against PixelWorld's exact boxes."""

from __future__ import annotations

import numpy as np
import pytest

from pixelwise.core.errors import PixelwiseError
from pixelwise.core.results import Result, SegObject
from pixelwise.eval import boxes as B


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("boxes")
    generate(root, GenConfig(split="test", num=16, seed=3, tasks=("grounding", "detection")))
    return root


def _answer(item, text: str, objects=()) -> Result:
    return Result(answer=text, objects=list(objects), frame_indices=[0], size=item.frames.shape[1:3])


def test_text_boxes_scale_the_grid_and_order_corners():
    assert B.text_boxes("a <box>0,0,500,1000</box> b <box>1000, 600 ,200,100</box>", (100, 200)) == [
        (0.0, 0.0, 100.0, 100.0), (40.0, 10.0, 200.0, 60.0)]
    assert B.text_boxes("<box>0,0,2000,5</box>", (10, 10)) == [(0.0, 0.0, 10.0, 0.05)]  # clamped to the grid
    assert B.text_boxes("no box here", (10, 10)) == []


def test_match_takes_each_target_once_in_order():
    targets = [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert B.match([(0, 0, 10, 10), (0, 0, 10, 10), (21, 21, 30, 30)], targets) == 2  # a duplicate is not a hit
    assert B.match([(0, 0, 10, 4)], targets) == 0  # IoU 0.4
    assert B.match([], targets) == 0 and B.match([(0, 0, 1, 1)], []) == 0


def test_detection_is_micro_averaged_over_boxes():
    rows = [{"hits": 1, "boxes": [(0, 0, 1, 1)] * 2, "targets": 1}, {"hits": 0, "boxes": [], "targets": 2}]
    d = B._detection(rows)  # 1 hit of 2 predicted, 3 true boxes: P 1/2, R 1/3, F1 = 2 * 1 / (2 + 3)
    assert d["F1"] == pytest.approx(40.0) and d["precision"] == pytest.approx(50.0)
    assert d["recall"] == pytest.approx(100 / 3) and d["exact"] == 0.0
    assert B._detection([{"hits": 0, "boxes": [], "targets": 0}])["F1"] == 100.0  # nothing to find, nothing found


def test_the_reference_answers_score_100_and_no_answer_scores_0(folder):
    truth = B.evaluate(folder, lambda item: _answer(item, item.answer))
    m = truth["metrics"]
    assert truth["samples"] == 16 and m["Acc@0.5"] == 100.0 and m["F1"] == 100.0
    assert m["detection"]["exact"] == 100.0 and m["grounding"]["samples"] + m["detection"]["samples"] == 16
    assert m["mIoU"] > 99.0  # the 0-1000 grid rounds the exact boxes a little

    nothing = B.evaluate(folder, lambda item: _answer(item, "I cannot tell."))
    assert nothing["metrics"]["Acc@0.5"] == 0.0 and nothing["metrics"]["F1"] == 0.0
    empty = sum(r["targets"] == 0 for r in nothing["per_sample"] if r["task"] == "detection")
    assert nothing["metrics"]["detection"]["exact"] == pytest.approx(100 * empty / m["detection"]["samples"])


def test_object_boxes_come_first_then_text_then_masks(folder):
    item = next(B.PixelWorldDataset(folder, tasks=["grounding"])[i] for i in range(16))
    h, w = item.frames.shape[1:3]
    mask = np.zeros((1, h, w), bool)
    mask[0, 2:10, 4:20] = True
    by_mask = _answer(item, "A ring.", [SegObject(id=0, masks=mask)])
    assert B.predicted_boxes(by_mask, (h, w)) == [(4.0, 2.0, 20.0, 10.0)]
    by_text = _answer(item, "A ring <box>0,0,500,500</box>.", [SegObject(id=0, masks=mask)])
    assert B.predicted_boxes(by_text, (h, w)) == [(0.0, 0.0, w / 2, h / 2)]
    ranked = [SegObject(id=0, masks=mask[:, :0], box=(1, 1, 2, 2), score=0.2),
              SegObject(id=1, masks=mask[:, :0], box=(3, 3, 4, 4), score=0.9)]
    assert B.predicted_boxes(_answer(item, "<box>0,0,9,9</box>", ranked), (h, w)) == [(3, 3, 4, 4), (1, 1, 2, 2)]


def test_errors(tmp_path, capsys):
    from pixelwise.cli import main
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    generate(tmp_path / "ref", GenConfig(split="test", num=2, seed=1, resolution=64, tasks=("referring",)))
    with pytest.raises(PixelwiseError, match="no image grounding or detection questions"):
        B.evaluate(tmp_path / "ref", lambda item: None)
    assert main(["eval", "--benchmark", "pixelworld-boxes", "--data", str(tmp_path / "ref"), "--pred",
                 str(tmp_path)]) == 2
    assert "pixelworld-boxes runs a model: give --model" in capsys.readouterr().err


def test_bootstrap_intervals_contain_the_reported_scores(folder):
    from pixelwise.eval.intervals import bootstrap_interval

    rng = np.random.default_rng(0)

    def noisy(item):  # the reference boxes, shifted by a random amount: some hits, some misses
        h, w = item.frames.shape[1:3]
        boxes = B.text_boxes(item.answer, (h, w))
        dx = float(rng.integers(0, 12))
        return _answer(item, "", [SegObject(id=k, masks=np.zeros((1, 0, 0), bool), box=(x1 + dx, y1, x2 + dx, y2))
                                  for k, (x1, y1, x2, y2) in enumerate(boxes)])

    report = B.evaluate(folder, noisy)
    for metric, task in (("Acc@0.5", "grounding"), ("F1", "detection")):
        rows = [r for r in report["per_sample"] if r["task"] == task]
        lo, hi = bootstrap_interval(metric, rows)
        assert lo <= report["metrics"][metric] / 100 <= hi and hi > lo
