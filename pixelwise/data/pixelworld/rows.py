"""The PixelWorld evaluation rows: one table, one generator, used by the evaluation recipe
(`recipes/eval_pixelworld.py`), `pixelwise bench compare` and the model cards.

A row is a PixelWorld task generated for a split and exported to a public benchmark layout, scored by the runner of
`pixelwise eval` under that benchmark's protocol. Data is keyed by `(seed, split, num)`: a folder generated with
other arguments is regenerated, never scored stale.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pixelwise.data.pixelworld.export import export
from pixelwise.data.pixelworld.generate import GenConfig, generate


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    tasks: str  # PixelWorld task generated for this row
    video: bool
    fmt: str | None  # export layout (None: the native PixelWorld folder)
    bench: str  # benchmark name for the runner ({split} filled in)
    metric: str  # headline metric key of the report


ROWS: tuple[Row, ...] = (
    Row("image_referring", "image referring (cIoU)", "referring", False, "refcoco", "refcoco:{split}", "cIoU"),
    Row("multi_target", "multi-target, matched (gIoU)", "multi_target", False, "muse", "muse:{split}", "gIoU"),
    Row("video_referring", "video referring (J&F)", "referring", True, "mevis", "mevis", "J&F"),
    Row("motion_referring", "motion referring (J&F)", "motion_referring", True, "mevis", "mevis", "J&F"),
    Row("region_qa", "region QA, mask prompt (acc.)", "region", True, "videorefer", "videorefer-bench-q", "Acc"),
    Row("pixelqa", "PixelQA, box prompt (acc.)", "pixelqa", True, "videorefer", "pixelqa", "Acc"),
    Row("image_region", "image region questions, open (acc.)", "region", False, None, "pixelworld-region", "Acc"),
    Row("editing", "editing (masked IoU of the change)", "editing", False, None, "pixelworld-editing", "masked_iou"),
    Row("grounding", "grounding, one box (Acc@0.5)", "grounding", False, None, "pixelworld-boxes", "Acc@0.5"),
    Row("detection", "detection, every box (F1)", "detection", False, None, "pixelworld-boxes", "F1"),
)
BY_NAME = {r.name: r for r in ROWS}

# The rows of the default model's card (issue #14's targets): the UniPixel tasks with a public layout.
CARD_ROWS = ("image_referring", "video_referring", "motion_referring", "region_qa", "pixelqa")


def generate_row(root: str | Path, split: str, row: Row, num: int, seed: int, workers: int = 1) -> Path:
    """The row's data for `(split, num, seed)` under `root` (generated and exported once); the folder of its
    benchmark layout (or the native folder when the row has none)."""

    root = Path(root)
    meta = root / "dataset.json"
    if (root / "samples.jsonl").is_file() and meta.is_file():
        m = json.loads(meta.read_text())
        if (m.get("num"), m.get("seed"), m.get("split"), list(m.get("tasks") or [])) != (num, seed, split, [row.tasks]):
            shutil.rmtree(root)  # generated for another --num / --seed / split: regenerate
    if not (root / "samples.jsonl").is_file():
        generate(root, GenConfig(split=split, num=num, seed=seed, tasks=(row.tasks,), video=row.video),
                 workers=workers)
    if row.fmt is None:
        return root
    out = root / row.fmt
    if not out.exists():
        export(root, row.fmt)
    return out
