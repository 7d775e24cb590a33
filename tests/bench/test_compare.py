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
