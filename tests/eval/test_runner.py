"""End to end: read a fixture benchmark, run an oracle and a degraded predictor, score with the official protocol.

The oracle must give 100 everywhere; the degraded predictor (odd frames emptied on videos, bottom half emptied on
images, a fixed "(B)" answer) must give values worked out by hand from the fixture's geometry.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixelwise.cli import main
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.results import Result, SegObject
from pixelwise.data.formats import predictions as P
from pixelwise.eval import runner
from pixelwise.eval.predictor import OraclePredictor
from pixelwise.eval.protocols import round2
from tests.formats import builders as B


class Degraded(OraclePredictor):
    def predict(self, sample):
        r = super().predict(sample)
        for o in r.objects:
            if sample.num_frames > 1:
                o.masks[1::2] = False
            else:
                o.masks[:, sample.size[0] // 2 :] = False
        r.answer = "(B)"
        return r


def run(bench, root, tmp_path, predictor, name="pred", workers=1):
    return runner.run(bench, root, predictor, tmp_path / name, workers=workers)


def test_mevis_oracle_and_degraded(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    ok = run("mevis", d["root"], tmp_path, OraclePredictor(), "oracle")
    assert ok["metrics"] == {"J": 100.0, "F": 100.0, "J&F": 100.0}
    bad = run("mevis", d["root"], tmp_path, Degraded(), "bad")
    # vidA/0 and vidB/0: 2 of 4 frames emptied → 0.5; vidA/1: the emptied frame 1 has no target → 0.75
    expected = 100 * (0.5 + 0.75 + 0.5) / 3
    assert bad["metrics"]["J"] == pytest.approx(expected, abs=1e-12)
    assert bad["metrics"]["F"] == pytest.approx(expected, abs=1e-12)


def test_revos_degraded_exact(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "revos")
    ok = run("revos", d["root"], tmp_path, OraclePredictor(), "oracle")["metrics"]
    assert ok["overall"] == {"J": 100.0, "F": 100.0, "A": 100.0, "R": 100.0, "J&F": 100.0}
    bad = run("revos", d["root"], tmp_path, Degraded(), "bad")["metrics"]
    assert bad["referring"]["J"] == 50.0 and bad["reasoning"]["J"] == 75.0
    assert bad["overall"]["J&F"] == 62.5
    assert bad["overall"]["R"] == 100.0  # emptying frames never adds false positives
    # 192 px frames; emptied frames 1 and 3 lose 20 + 20 px (vidA/0) and 20 + 56 px (vidB/0; object 2 absent on 1)
    a_ref = (round2(1 - 40 / 768) + round2(1 - 76 / 768)) / 2
    assert bad["referring"]["A"] == a_ref == (94.79 + 90.10) / 2
    assert bad["reasoning"]["A"] == 95.31  # 95.3125 rounds half-to-even, like numpy


def test_ref_sav_png_and_json_predictions_agree(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "ref-sav")
    bad = run("ref-sav", d["root"], tmp_path, Degraded(), "bad")["metrics"]
    assert bad["long"]["J&F"] == 50.0 and bad["short"]["J&F"] == 75.0 and bad["overall"]["J"] == 62.5
    # the same predictions as a Sa2VA JSON
    preds = {}
    for vid, exps in {"vidA": ["0", "1"], "vidB": ["0"]}.items():
        for e in exps:
            preds.setdefault(vid, {})[e] = P.read_video_masks(tmp_path / "bad", vid, e, B.FRAMES, (B.H, B.W))
    path = P.write_refsav_json(tmp_path / "pred.json", preds)
    assert runner.score("ref-sav", d["root"], path, workers=1)["metrics"] == bad


def test_ref_davis17_both_protocols(tmp_path):
    d = B.build_png_dataset(tmp_path / "data")
    assert run("ref-davis17", d["root"], tmp_path, Degraded(), "bad")["metrics"] == {"J": 62.5, "F": 62.5, "J&F": 62.5}
    # ReferFormer: combined label maps per annotator set; sets 0-2 perfect, set 3 empty: object 1 scores 0, object 2
    # scores 1/4 (it is absent on frame 1, where empty/empty = 1) → set 3 = 12.5 → mean (3 × 100 + 12.5) / 4
    for k in range(4):
        labels = d["labels"] if k < 3 else np.zeros_like(d["labels"])
        P.write_davis_labels(tmp_path / "rf", k, "vidA", B.FRAMES, labels)
    out = runner.score("ref-davis17-referformer", d["root"], tmp_path / "rf")
    assert out["metrics"]["J"] == 78.125 and out["metrics"]["F"] == 78.125


def test_groundmore_window_scoring(tmp_path):
    d = B.build_groundmore(tmp_path / "data")
    assert run("groundmore", d["root"], tmp_path, OraclePredictor(), "ok")["metrics"]["overall"]["J&F"] == 100.0
    bad = run("groundmore", d["root"], tmp_path, Degraded(), "bad")["metrics"]
    # 8 of the 20 sampled frames fall in the action window; 4 of them (odd positions) are emptied
    assert bad["overall"]["J"] == pytest.approx(80.0, abs=1e-12)
    assert bad["Causal"]["F"] == pytest.approx(80.0, abs=1e-12)


def test_refcoco_ciou_giou(tmp_path):
    d = B.build_refcoco(tmp_path / "data")
    ok = run("refcoco", d["root"], tmp_path, OraclePredictor(), "ok")
    assert ok["metrics"] == {"cIoU": 100.0, "gIoU": 100.0} and ok["samples"] == 3
    bad = run("refcoco", d["root"], tmp_path, Degraded(), "bad")
    samples = {s.key: s for s in runner.get_benchmark("refcoco").read(d["root"])}
    top, low = samples["1/0"].gt_union().sum(), samples["2/3"].gt_union().sum()  # low box lies in the bottom half
    assert bad["metrics"]["gIoU"] == pytest.approx(100 * 2 / 3, abs=1e-12)
    assert bad["metrics"]["cIoU"] == pytest.approx(100 * 2 * top / (2 * top + low), abs=1e-12)


def test_reasonseg_ignore_pixels(tmp_path):
    d = B.build_reasonseg(tmp_path / "data")
    # predicting the ignore region too costs nothing
    class Greedy(OraclePredictor):
        def predict(self, sample):
            r = super().predict(sample)
            ign = sample.ignore_mask()
            r.objects = [SegObject(0, sample.gt_union() | ign)]
            return r

    out = run("reasonseg", d["root"], tmp_path, Greedy(), "greedy")
    assert out["metrics"] == {"cIoU": 100.0, "gIoU": 100.0}  # image b: empty/empty scores 1 in gIoU


def test_muse_matching(tmp_path):
    d = B.build_muse(tmp_path / "data")
    assert run("muse", d["root"], tmp_path, OraclePredictor(), "ok")["metrics"] == {"cIoU": 100.0, "gIoU": 100.0}
    bad = run("muse", d["root"], tmp_path, Degraded(), "bad")["metrics"]
    s0 = runner.get_benchmark("muse").read(d["root"])[0].gt_instances()
    a0, a1 = s0[0].sum(), s0[1].sum()
    assert bad["gIoU"] == pytest.approx(100 / 3, abs=1e-12)  # 1 of 3 instance pairs kept, max(#pred, #gt) = 3
    assert bad["cIoU"] == pytest.approx(100 * a0 / (a0 + 2 * a1), abs=1e-12)


def test_videorefer_and_pixelqa(tmp_path):
    d = B.build_videorefer(tmp_path / "data")
    ok = run("videorefer-bench-q", d["root"], tmp_path, OraclePredictor(), "ok")["metrics"]
    assert ok["Acc"] == 100.0
    bad = run("videorefer-bench-q", d["root"], tmp_path, Degraded(), "bad")["metrics"]
    assert bad == {"Acc": 50.0, "Basic Questions": 0.0, "Future Predictions": 100.0}
    lines = (tmp_path / "bad" / "answers.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["pred"] == "(B)"
    px = run("pixelqa", d["root"], tmp_path, OraclePredictor(), "px")["metrics"]
    assert px["Acc"] == 100.0 and px["J&F"] == pytest.approx(100.0, abs=1e-4)  # UniPixel's 1e-6 epsilons


def test_resume_skips_existing_predictions(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    first = runner.predict("mevis", d["root"], OraclePredictor(), tmp_path / "p")
    assert first == {"predicted": 3, "skipped": 0}

    class Boom:
        def predict(self, sample):
            raise AssertionError("should not be called")

    assert runner.predict("mevis", d["root"], Boom(), tmp_path / "p") == {"predicted": 0, "skipped": 3}
    (tmp_path / "p" / "vidB" / "0" / "00003.png").unlink()  # an interrupted expression is predicted again
    assert runner.predict("mevis", d["root"], OraclePredictor(), tmp_path / "p")["predicted"] == 1


def test_missing_video_scores_zero(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    runner.predict("mevis", d["root"], OraclePredictor(), tmp_path / "p")
    import shutil

    shutil.rmtree(tmp_path / "p" / "vidB")
    out = runner.score("mevis", d["root"], tmp_path / "p", workers=2)  # also exercises the process pool
    assert out["missing"] == 1 and out["metrics"]["J"] == pytest.approx(200 / 3, abs=1e-12)


def test_cli_scores_and_writes_json(tmp_path, capsys):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    runner.predict("mevis", d["root"], Degraded(), tmp_path / "p")
    rc = main(["eval", "--benchmark", "mevis", "--data", str(d["root"]), "--pred", str(tmp_path / "p"),
               "--out", str(tmp_path / "m.json"), "--workers", "1"])
    assert rc == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["metrics"]["J&F"] == pytest.approx(100 * 1.75 / 3) and len(report["per_sample"]) == 3
    assert "J&F" in capsys.readouterr().out
    rc = main(["eval", "--benchmark", "mevis", "--data", str(d["root"]), "--model", "oracle",
               "--pred", str(tmp_path / "o"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]["J&F"] == 100.0


def test_cli_limit_reuse_and_timings(tmp_path, capsys):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    args = ["eval", "--benchmark", "mevis", "--data", str(d["root"]), "--model", "oracle", "--pred", str(tmp_path / "o")]
    assert main([*args, "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert "mevis: 2 sample(s) in" in captured.err and "--limit" in captured.err
    assert "predicted 2, reused 0 finished prediction(s)" in captured.out.replace("\n", " ")
    assert main([*args, "--json"]) == 0  # the two finished predictions are reused, the third one is made
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["samples"], report["predicted"], report["skipped"]) == (3, 1, 2)
    assert report["predict_seconds"] >= 0 and report["score_seconds"] >= 0


def test_cli_errors_exit_2(tmp_path, capsys):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")
    assert main(["eval", "--benchmark", "nope", "--data", str(d["root"]), "--pred", str(tmp_path)]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "mevis", "--data", str(tmp_path / "x"), "--pred", str(tmp_path)]) == 2
    assert "meta_expressions.json: file not found" in capsys.readouterr().err


def test_model_loader_goes_through_pixelwise_load(monkeypatch):
    import pixelwise

    seen = []
    monkeypatch.setattr(pixelwise, "load", lambda path, **kw: seen.append(kw) or OraclePredictor(), raising=False)
    assert isinstance(runner.load_predictor("some/model", "cpu", 2), OraclePredictor)
    assert seen == [{"device": "cpu", "threads": 2}]
    monkeypatch.setattr(pixelwise, "load", lambda path, **kw: object(), raising=False)
    with pytest.raises(PixelwiseError, match="has no predict"):
        runner.load_predictor("some/model")


def test_result_with_wrong_frame_count_is_rejected(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "mevis")

    class Short:
        def predict(self, sample):
            return Result("", [SegObject(0, np.zeros((2, B.H, B.W), bool))], [0, 1], (B.H, B.W))

    with pytest.raises(PixelwiseError, match="2 frames, the sample 4"):
        runner.predict("mevis", d["root"], Short(), tmp_path / "p")


def test_benchmark_aliases_and_png_image_predictions(tmp_path):
    from PIL import Image

    assert runner.get_benchmark("Ref-YouTube-VOS").name == "Ref-YouTube-VOS"
    assert runner.get_benchmark("refytvos").kind == "video"
    assert runner.get_benchmark("ReVOS").protocol.startswith("ReVOS")
    d = B.build_refcoco(tmp_path / "data")
    for s in runner.get_benchmark("refcoco").read(d["root"]):  # oracle predictions as plain 0/255 PNGs
        path = tmp_path / "png" / f"{s.key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(s.gt_union()[0].astype(np.uint8) * 255).save(path)
    assert runner.score("RefCOCO", d["root"], tmp_path / "png", workers=1)["metrics"] == {"cIoU": 100.0, "gIoU": 100.0}


def test_revos_without_foreground_file_reports_no_r(tmp_path):
    d = B.build_mask_dict_dataset(tmp_path / "data", "revos")
    (d["root"] / "mask_dict_foreground.json").unlink()
    out = run("revos", d["root"], tmp_path, OraclePredictor(), "ok")["metrics"]
    assert "R" not in out["overall"] and out["overall"]["J&F"] == 100.0


def test_ref_youtube_vos_writes_a_server_submission(tmp_path):
    import zipfile

    d = B.build_png_dataset(tmp_path / "data", "ref-youtube-vos")
    out = run("ref-youtube-vos", d["root"], tmp_path, Degraded(), "sub")
    assert out["metrics"]["J"] == 62.5  # scored from the Annotations/ folder
    names = zipfile.ZipFile(tmp_path / "sub" / "submission.zip").namelist()
    assert min(names) == "Annotations/vidA/0/00000.png" and len(names) == 8


@pytest.mark.slow
def test_torchrun_shards_evaluation_with_the_same_predictions_and_metrics(tmp_path):
    """`torchrun --nproc-per-node 2 -m pixelwise eval ...` (gloo, CPU): each rank predicts half the samples, rank 0
    scores; the prediction files and the metrics equal a single-process run."""
    import filecmp
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from pixelwise.data.pixelworld.rows import BY_NAME, generate_row

    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun is not installed next to this Python")
    data = generate_row(tmp_path / "data", "test", BY_NAME["video_referring"], 4, 0)
    model = Path(__file__).resolve().parents[1] / "data" / "conformance" / "unipixel" / "checkpoint"
    args = ["-m", "pixelwise", "eval", "-b", "mevis", "--data", str(data), "--model", str(model), "--json",
            "--threads", "1", "--device", "cpu", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--pred", str(tmp_path / "one")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", "29531", *args,
                          "--pred", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads(one.stdout.strip().splitlines()[-1])
    m2 = json.loads(two.stdout.strip().splitlines()[-1])  # rank 0's report, the only one printed
    assert m2["metrics"] == m1["metrics"] and m2["samples"] == m1["samples"] == 4
    assert m2["predicted"] == 2  # rank 0's half (the other rank predicted the other two)
    cmp = filecmp.dircmp(tmp_path / "one", tmp_path / "two")
    pngs = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert pngs and all(filecmp.cmp(tmp_path / "one" / p, tmp_path / "two" / p, shallow=False) for p in pngs)
    assert not cmp.left_only and not cmp.right_only


def test_muse_reports_how_often_a_question_with_no_target_gets_no_mask():
    from pixelwise.eval.benchmarks import _muse_agg

    def rec(image, n_pred, n_gt, iou=0.0, nonempty=None, missing=False):
        return {"image": image, "I": 0, "U": 0, "iou_sum": iou, "n_pred": n_pred, "n_gt": n_gt, "missing": missing,
                "n_pred_nonempty": n_pred if nonempty is None else nonempty}

    out = _muse_agg([rec("a", 1, 1, 1.0), rec("b", 0, 0), rec("c", 2, 0), rec("d", 0, 0), rec("e", 0, 0),
                     rec("f", 1, 0, nonempty=0), rec("g", 0, 0, missing=True)])
    # 4 of the 5 answered zero-target questions have no mask (f: one object, its mask empty); g has no prediction
    assert out["no_target_empty"] == 80.0
    assert "no_target_empty" not in _muse_agg([rec("a", 1, 1, 1.0)])  # real MUSE: no such question


def test_muse_scores_an_answer_with_no_object(tmp_path):
    class Nothing(OraclePredictor):
        def predict(self, sample):
            r = super().predict(sample)
            r.objects = []
            return r

    d = B.build_muse(tmp_path / "data")
    out = run("muse", d["root"], tmp_path, Nothing(), "nothing")
    assert out["metrics"]["gIoU"] == 0.0 and out["samples"] > 0
