"""Benchmark names -> how to read their official layout: the readers of this folder behind one lookup.

Names accept an optional split after a colon (`refcoco:testA`, `muse:test_less`, `pixelqa:box`) and the spellings
seen in papers and repositories (`Ref-YouTube-VOS`, `refytvos`, `VideoRefer-Bench-Q`, ...). Evaluation
(`eval.benchmarks`) adds how each is scored; training (`BenchmarkSource`) only reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pixelwise.core.errors import PixelwiseError
from pixelwise.data.formats.groundmore import read_groundmore
from pixelwise.data.formats.muse import read_muse
from pixelwise.data.formats.reasonseg import read_reasonseg
from pixelwise.data.formats.refcoco import read_refcoco
from pixelwise.data.formats.rvos import read_rvos
from pixelwise.data.formats.sample import Sample
from pixelwise.data.formats.videorefer import read_videorefer

Reader = Callable[[Path], list[Sample]]

NAMES = ("mevis", "revos", "ref-sav", "ref-youtube-vos", "ref-davis17", "ref-davis17-referformer", "groundmore",
         "refcoco", "refcoco+", "refcocog", "reasonseg", "muse", "videorefer-bench-q", "pixelqa")

# Spellings seen in papers and repos -> registry name (compared with case, "-", "_" and spaces removed).
ALIASES = {
    "mevis": "mevis", "mevisvalidu": "mevis", "revos": "revos", "refsav": "ref-sav",
    "refyoutubevos": "ref-youtube-vos", "refytvos": "ref-youtube-vos", "ytvos": "ref-youtube-vos",
    "refdavis17": "ref-davis17", "refdavis": "ref-davis17", "davis17": "ref-davis17",
    "refdavis17referformer": "ref-davis17-referformer", "groundmore": "groundmore",
    "refcoco": "refcoco", "refcoco+": "refcoco+", "refcocoplus": "refcoco+", "refcocog": "refcocog",
    "reasonseg": "reasonseg", "muse": "muse", "videoreferbenchq": "videorefer-bench-q", "videorefer": "videorefer-bench-q",
    "videoreferbench": "videorefer-bench-q", "pixelqa": "pixelqa",
}

VIDEOREFER_FILES = ("VideoRefer-Bench-Q.json", "questions.json")


def parse_name(name: str) -> tuple[str, str | None]:
    """`"RefCOCO:testA"` -> `("refcoco", "testA")`: the registry name and the split (None when not given)."""
    base, _, split = name.partition(":")
    key = "".join(ch for ch in base.lower() if ch.isalnum() or ch == "+")
    return ALIASES.get(key, base.lower()), split or None


def reader(name: str) -> Reader:
    """The function that reads benchmark `name` from its dataset root; PixelwiseError for an unknown name."""
    base, split = parse_name(name)
    if base in ("mevis", "ref-youtube-vos", "revos", "ref-sav", "ref-davis17"):
        return lambda root: read_rvos(root, base)
    if base == "ref-davis17-referformer":
        return lambda root: read_rvos(root, "ref-davis17")
    if base == "groundmore":
        return read_groundmore
    if base in ("refcoco", "refcoco+", "refcocog"):
        return _refcoco(base, split)
    if base == "reasonseg":
        return read_reasonseg
    if base == "muse":
        return lambda root: read_muse(root / f"muse_{split or 'val'}.json", root / "images")
    if base in ("videorefer-bench-q", "pixelqa"):
        return _videorefer("mask" if base == "videorefer-bench-q" else split or "box")
    raise PixelwiseError(f"unknown benchmark '{name}'; known: {', '.join(NAMES)}")


def _refcoco(dataset: str, split: str | None) -> Reader:
    def read(root: Path) -> list[Sample]:
        name = dataset
        if not (root / dataset).is_dir():  # a root holding a single refer-style dataset under another name
            found = sorted(p.parent.name for p in root.glob("*/instances.json"))
            if len(found) == 1:
                name = found[0]
        return read_refcoco(root, name, split or "val")

    return read


def _videorefer(prompt: str) -> Reader:
    def read(root: Path) -> list[Sample]:
        path = next((root / n for n in VIDEOREFER_FILES if (root / n).is_file()), root / VIDEOREFER_FILES[0])
        return read_videorefer(path, root, prompt)

    return read
