from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixelwise.bench import suite
from pixelwise.bench.memory import track_peak
from pixelwise.bench.report import summary_lines
from pixelwise.bench.shapes import shaped_config

from .conftest import CHECKPOINT


def test_summarize_and_side_by_side_interleave():
    s = suite.summarize([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4 and s["iqr"] > 0
    order: list[str] = []
    stats = suite.side_by_side({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3)
    assert order == ["a", "b"] + ["a", "b"] * 3 and stats["a"]["n"] == 3  # warm-up, then A B A B A B


def test_track_peak_sees_an_allocation_made_and_freed_inside_the_block():
    with track_peak(interval_s=0.001) as mem:
        x = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        x.sum()
        import time

        time.sleep(0.05)
        del x
    assert mem.growth > 48 * 2**20


def test_synthetic_clip_file_has_the_frames(tmp_path):
    from pixelwise.core.media import open_media

    path = suite.write_clip(tmp_path / "c.mp4", 23, 64, 96)
    src = open_media(path)
    assert src.num_frames == 23 and src.size == (64, 96)


def test_3b_shapes_match_the_official_parameter_counts():
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.models.unipixel.configuration_unipixel import UniPixelConfig

    cfg = shaped_config(json.loads((CHECKPOINT / "config.json").read_text()), "3b")
    with torch.device("meta"):
        model = UniPixelForConditionalGeneration(UniPixelConfig.from_dict(cfg))

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(model.sam2) == 80_850_178 and round(count(model.visual) / 1e6, 1) == 668.7
    # the LLM minus the embedding rows the small tokenizer does not have (vocab 151936 in the real 3B)
    assert round((count(model.language_model) + (151936 - cfg["vocab_size"]) * 2048) / 1e6, 1) == 3085.9
    with pytest.raises(ValueError, match="unknown shapes"):
        shaped_config({}, "70b")


@pytest.mark.slow
def test_cli_bench_objects_case_writes_a_report(tmp_path):
    from pixelwise.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "-m", str(CHECKPOINT), "-c", "objects", "--objects", "2", "-n", "1", "--threads", "1",
               "-o", str(out), "--workdir", str(tmp_path / "work")])
    assert rc == 0
    report = json.loads(out.read_text())
    row = report["cases"]["objects"]["rows"][0]
    assert row["objects"] == 2 and row["same_masks"] is True
    assert row["optimised_sam2_frames_encoded"] == 16 and row["reference_sam2_frames_encoded"] == 32
    assert row["speedup"] > 0 and report["machine"]["cpu_count"] >= 1
    assert any("2 object(s)" in line for line in summary_lines(report))


@pytest.mark.slow
def test_train_case_reports_samples_per_second_of_the_default_recipe(tmp_path):
    from pixelwise.bench import suite
    from pixelwise.bench.report import summary_lines

    cfg = suite.BenchConfig(repeats=1, train_steps=2, workdir=tmp_path)
    report = suite.run(cfg, ("train",), log=lambda m: None)
    t = report["cases"]["train"]
    assert t["config"].endswith("unipixel_tiny.yaml") and t["micro_batch"] == 4 and t["sizes"]["llm_hidden"] == 256
    assert t["samples_per_repeat"] == 8 and t["samples_per_s"] > 0 and t["run_s"]["n"] == 1
    assert "model" not in report  # no inference model is loaded for this case
    assert any(line.startswith("training (") for line in summary_lines(report))


def test_throughput_case_reports_batched_queries_side_by_side(tmp_path):
    from pixelwise.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "-m", str(CHECKPOINT), "-c", "throughput", "--batch-sizes", "1,3", "-n", "1", "--threads",
               "1", "--max-new-tokens", "4", "-o", str(out), "--workdir", str(tmp_path / "work")])
    assert rc == 0
    t = json.loads(out.read_text())["cases"]["throughput"]
    assert set(t["batched"]) == {"1", "3"} and all(b["same_answers"] for b in t["batched"].values())
    assert all(b["queries_per_s"] > 0 for b in t["batched"].values())
    assert main(["bench", "-c", "throughput", "--batch-sizes", "0", "-o", str(out)]) == 2
