"""Give a model folder the SAM2 tracking weights of another one trained from the same SAM2 (stage 0d).

    python -m pixelwise.recipes.merge_sam2_tracking runs/unipixel-tiny-view/final runs/unipixel-tiny-track/final \
        --out runs/view-track

Stage 0d (`configs/unipixel_tiny_track.yaml`) trains only the parts of SAM2 that act after the prompted frame (the
memory attention and encoder, the object pointers); the LLM stages keep SAM2 frozen. So the two combine: the result
is `base` with those tensors taken from `tracking`. The frozen SAM2 parts of the two must be equal (the same stage-0
SAM2), which is checked: otherwise the tracking weights were learned on other features and are refused.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from pixelwise.core.errors import CheckpointError

TRACKING = re.compile(
    r"^sam2\.(memory_attention|memory_encoder|obj_ptr_proj|obj_ptr_tpos_proj|maskmem_tpos_enc|no_obj_embed_spatial"
    r"|no_obj_ptr)(\.|$)"
)
WEIGHTS = "model.safetensors"


def merge(base: str | Path, tracking: str | Path, out: str | Path) -> Path:
    """-> `out`: a copy of the model folder `base` whose SAM2 tracking tensors come from `tracking`."""
    import torch
    from safetensors.torch import load_file, save_file

    base, tracking, out = Path(base), Path(tracking), Path(out)
    for folder in (base, tracking):
        if not (folder / WEIGHTS).is_file():
            raise CheckpointError(f"{folder}: no {WEIGHTS} (a single-file model folder is needed)")
    own, other = load_file(str(base / WEIGHTS)), load_file(str(tracking / WEIGHTS))
    moved = sorted(k for k in own if TRACKING.match(k))
    if not moved:
        raise CheckpointError(f"{base}: no SAM2 tracking tensors (sam2.memory_attention, ...)")
    missing = [k for k in moved if k not in other]
    if missing:
        raise CheckpointError(f"{tracking}: lacks {missing[:3]}")
    frozen = [k for k in own if k.startswith("sam2.") and not TRACKING.match(k)]
    differ = [k for k in frozen if k not in other or not torch.equal(own[k], other[k])]
    if differ:
        raise CheckpointError(f"{tracking}: its other SAM2 weights differ from {base}'s ({differ[:3]}): not the same "
                              "stage-0 SAM2, so its tracking weights do not fit")
    merged = {**own, **{k: other[k] for k in moved}}
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(base, tmp)
    save_file(merged, str(tmp / WEIGHTS), metadata={"format": "pt"})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", help="the model folder to take everything else from")
    ap.add_argument("tracking", help="the model folder of stage 0d")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    print(merge(args.base, args.tracking, args.out))


if __name__ == "__main__":
    main()
