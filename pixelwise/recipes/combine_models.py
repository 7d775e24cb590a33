"""One model folder from two: the weights of `--base`, with the tensors whose names match `--take` from `--source`.

    python -m pixelwise.recipes.combine_models --base runs/unipixel-tiny-ground/final \
        --source runs/unipixel-tiny-sam2c/final --take '^sam2\\.(sam_mask_decoder|memory_|obj_ptr|mask_down|no_)' \
        --out runs/unipixel-tiny-combined

For stages trained side by side on disjoint parts (the default model's LLM stage keeps SAM2 frozen while SAM2's
decoder trains on clicks and boxes). Both folders must have the same architecture; every taken tensor must exist in
the base with the same shape, and at least one must match. Config and tokenizer files come from the base.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pixelwise.core.errors import CheckpointError
from pixelwise.models.unipixel import UniPixelForConditionalGeneration
from pixelwise.recipes.train_unipixel import copy_processor_files


def combine(base: str | Path, source: str | Path, take: str, out: str | Path) -> list[str]:
    """Write the combined folder to `out`; returns the names of the tensors taken from `source`."""

    base, source, out = Path(base), Path(source), Path(out)
    model = UniPixelForConditionalGeneration.from_pretrained(base)
    other = dict(UniPixelForConditionalGeneration.from_pretrained(source).state_dict())
    own = model.state_dict()
    pattern = re.compile(take)
    taken = sorted(k for k in other if pattern.search(k))
    if not taken:
        raise CheckpointError(f"{source}: no tensor matches {take!r}")
    for k in taken:
        if k not in own or own[k].shape != other[k].shape:
            raise CheckpointError(f"{k}: not in {base} with shape {tuple(other[k].shape)}")
    model.load_state_dict({k: other[k] for k in taken}, strict=False)
    model.save_pretrained(out)
    copy_processor_files(base, out)
    return taken


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pixelwise.recipes.combine_models", description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--take", required=True, help="regex over tensor names taken from --source")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    taken = combine(args.base, args.source, args.take, args.out)
    print(f"{args.out}: {len(taken)} tensors from {args.source}")


if __name__ == "__main__":
    main()
