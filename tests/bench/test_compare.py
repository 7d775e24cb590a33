"""`pixelwise bench compare`: families scored by the eval runner on generated PixelWorld rows, '-' with a reason
for inputs a family cannot take, markdown tables that keep the hand-written notes."""

from __future__ import annotations

import json

from pixelwise.bench import compare as C


def test_compare_scores_supported_rows_and_records_why_others_are_not(tmp_path):
    cfg = C.CompareConfig(splits=("test",), num=2, families=("UFO", "VITRON"),
                          rows=("image_referring", "region_qa", "image_region", "editing"), latency_repeats=1, workdir=tmp_path)
    report = C.run(cfg, log=lambda m: None)
    ufo, vitron = report["families"]["UFO"], report["families"]["VITRON"]
    ref = ufo["scores"]["test"]["image_referring"]
    assert 0.0 <= ref["value"] <= 1.0 and ref["samples"] == 2 and "cIoU" in ref["metrics"]
    assert ufo["scores"]["test"]["region_qa"]["value"] is None
    assert "visual prompts" in ufo["scores"]["test"]["region_qa"]["unsupported"]
    assert ufo["scores"]["test"]["editing"]["value"] is None
    assert "visual prompts" in ufo["scores"]["test"]["image_region"]["unsupported"]
    region = vitron["scores"]["test"]["image_region"]  # open questions about a clicked / boxed / masked object
    assert 0.0 <= region["value"] <= 1.0 and region["samples"] == 2 and "Acc" in region["metrics"]
    assert vitron["scores"]["test"]["editing"]["value"] is not None  # VITRON has editing back-ends
    assert ufo["parameters"] > 0 and ufo["latency"]["median_s"] > 0
    assert ufo["training"]["wall_minutes"] > 0  # from the checkpoint's training.json

    md = C.markdown(report, "pixelwise bench compare --num 2")
    assert "| image referring (cIoU) |" in md and "| UFO | VITRON |" in md and "pixelwise bench compare --num 2" in md
    line = next(x for x in md.splitlines() if x.startswith("| region QA"))
    assert line.count("| - |") >= 1
    doc = tmp_path / "comparison.md"
    doc.write_text("old tables\n\n" + C.NOTES_MARKER + "\nWhy UFO differs.\n")
    merged = C.with_notes(md, doc)
    assert "old tables" not in merged and merged.endswith("Why UFO differs.\n") and md.strip() in merged
    json.dumps(report)  # the report is plain JSON


def test_cli_compare_rejects_unknown_family_and_row():
    from pixelwise.cli import main

    assert main(["bench", "compare", "--family", "LISA"]) == 2
    assert main(["bench", "compare", "--row", "depth"]) == 2


def _report(families, num=200, date="d1"):
    scores = {"test": {"image_referring": {"value": 0.1, "interval": [0.05, 0.15]}}}
    return {"machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t", "load_average": [1.0, 1.0, 1.0],
                        "load_average_end": [2.0, 2.0, 2.0]}, "date": date, "command": f"pixelwise bench compare {date}",
            "config": {"splits": ["test"], "num": num, "seed": 0, "rows": ["image_referring"], "torch_threads": 1},
            "families": {f: {"parameters": 1e6, "training": None, "latency": {"median_s": 0.01},
                             "scores": json.loads(json.dumps(scores))} for f in families}, "seconds": 60.0}


def test_update_replaces_only_the_rescored_families():
    old = _report(["UniPixel", "UFO", "VITRON"])
    new = _report(["UFO"], date="d2")
    new["families"]["UFO"]["scores"]["test"]["image_referring"]["value"] = 0.5
    merged = C.merge(old, new)
    assert list(merged["families"]) == ["UniPixel", "UFO", "VITRON"]
    assert list(C.merge(_report(["VITRON"]), _report(["UFO", "UniPixel"]))["families"]) == ["UniPixel", "UFO", "VITRON"]
    assert merged["families"]["UFO"]["scores"]["test"]["image_referring"]["value"] == 0.5
    assert merged["families"]["VITRON"]["scores"]["test"]["image_referring"]["value"] == 0.1
    assert old["families"]["UFO"]["scores"]["test"]["image_referring"]["value"] == 0.1  # the input is not changed
    assert merged["command"] == "pixelwise bench compare d1" and merged["updates"][0]["families"] == ["UFO"]
    md = C.markdown(merged, merged["command"])
    assert "| 0.100 (0.05-0.15) | 0.500 (0.05-0.15) | 0.100 (0.05-0.15) |" in md
    assert "Rescored later on the same data: UFO (d2" in md and "`pixelwise bench compare d2`" in md


def test_update_refuses_a_run_on_other_data():
    import pytest

    from pixelwise.core.errors import ConfigError

    with pytest.raises(ConfigError, match="num = 200, this run with 24"):
        C.merge(_report(["UFO"]), _report(["UFO"], num=24))
    for key, value in (("splits", ["holdout"]), ("seed", 3), ("rows", ["editing"])):
        other = _report(["UFO"])
        other["config"][key] = value
        with pytest.raises(ConfigError, match=f"{key} = "):
            C.merge(_report(["UFO"]), other)
    with pytest.raises(ConfigError, match="not a bench compare report"):
        C.check_same_data({"families": {}}, ["test"], 200, 0, ["image_referring"])


def test_cli_update_needs_a_family_an_existing_report_and_the_same_data(tmp_path, capsys):
    from pixelwise.cli import main

    report = tmp_path / "r.json"
    report.write_text(json.dumps(_report(["UFO"])))
    assert main(["bench", "compare", "--update", "--json", str(report)]) == 2
    assert "name at least one" in capsys.readouterr().err
    assert main(["bench", "compare", "--update", "--family", "UFO", "--json", str(tmp_path / "none.json")]) == 2
    assert "no existing report" in capsys.readouterr().err
    # checked before any scoring: a run on other data stops at once
    assert main(["bench", "compare", "--update", "--family", "UFO", "--num", "24", "--splits", "test",
                 "--row", "image_referring", "--json", str(report), "--workdir", str(tmp_path / "w")]) == 2
    assert "num = 200, this run with 24" in capsys.readouterr().err and not (tmp_path / "w").exists()
    report.write_text("{not json")
    assert main(["bench", "compare", "--update", "--family", "UFO", "--json", str(report)]) == 2
    assert "cannot read the existing report" in capsys.readouterr().err


def test_generated_rows_are_regenerated_when_num_or_seed_change(tmp_path):
    from pixelwise.data.pixelworld.rows import generate_row

    row = next(r for r in C.ROWS if r.name == "image_referring")
    root = tmp_path / "rows"
    generate_row(root, "test", row, 2, 0)
    assert len((root / "samples.jsonl").read_text().splitlines()) == 2
    generate_row(root, "test", row, 3, 0)  # another --num: not the stale 2 samples
    assert len((root / "samples.jsonl").read_text().splitlines()) == 3
    before = (root / "samples.jsonl").read_text()
    generate_row(root, "test", row, 3, 1)  # another --seed
    assert (root / "samples.jsonl").read_text() != before
