"""`pixelworld-region`: open questions about a clicked, boxed or masked region of a PixelWorld image, scored by
their exact answer."""

from __future__ import annotations

import pytest

from pixelwise.core.errors import PixelwiseError
from pixelwise.core.results import Result
from pixelwise.eval import region_questions as rq


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("region")
    generate(root, GenConfig(split="test", num=12, seed=4, resolution=64, tasks=("region",)))
    return root


def test_normalize_and_word_recall():
    assert rq.normalize("  It is  Cyan. ") == "it is cyan"
    assert rq.word_recall("A large red ring.", "A large cyan dotted ring.") == pytest.approx(3 / 5)
    assert rq.word_recall("", "Two.") == 0.0


def test_scores_exact_answers_per_type_and_prompt_kind(folder):
    seen = []

    def perfect(item):
        seen.append(item)
        assert len(item.prompts) == 1 and item.frames.shape[0] == 1
        return Result(answer=item.answer.upper() + "  ", objects=[], frame_indices=[0], size=item.frames.shape[1:3])

    report = rq.evaluate(folder, perfect)
    assert report["samples"] == len(seen) == 12 and report["metrics"]["Acc"] == 100.0
    m = report["metrics"]
    assert sum(m[q]["samples"] for q in rq.QTYPES if q in m) == 12
    assert sum(m[k]["samples"] for k in rq.PROMPT_KINDS if k in m) == 12

    constant = rq.evaluate(folder, lambda item: Result(answer="Two.", objects=[], frame_indices=[0],
                                                       size=item.frames.shape[1:3]), limit=10)
    rows = constant["per_sample"]
    assert constant["samples"] == 10
    assert constant["metrics"]["Acc"] == pytest.approx(100 * sum(r["reference"] == "Two." for r in rows) / 10)
    if "describe" in constant["metrics"]:
        assert constant["metrics"]["describe"]["Acc"] == 0.0


def test_the_pipeline_is_asked_about_region_0(folder):
    class Pipe:
        def ask(self, image, question, regions):
            self.calls = getattr(self, "calls", []) + [(image.shape, question, regions)]
            return Result(answer="x", objects=[], frame_indices=[0], size=image.shape[:2])

    pipe = Pipe()
    rq.evaluate(folder, rq.model_predictor(pipe), limit=3)
    for shape, question, regions in pipe.calls:
        assert len(shape) == 3 and "[0]" in question and "<region>" not in question and len(regions) == 1
    with pytest.raises(PixelwiseError, match="no ask method"):
        rq.model_predictor(object())


def test_errors(folder, tmp_path, capsys):
    from pixelwise.cli import main
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    generate(tmp_path / "ref", GenConfig(split="test", num=2, seed=1, resolution=64, tasks=("referring",)))
    with pytest.raises(PixelwiseError, match="no image region questions"):
        rq.evaluate(tmp_path / "ref", lambda item: None)
    assert main(["eval", "--benchmark", "pixelworld-region", "--data", str(folder), "--pred", str(tmp_path)]) == 2
    assert "pixelworld-region runs a model: give --model" in capsys.readouterr().err
