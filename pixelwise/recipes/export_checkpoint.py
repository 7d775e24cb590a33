"""A training checkpoint (`RUN/checkpoints/step_N`) -> a model folder that `pixelwise.load` reads.

    python -m pixelwise.recipes.export_checkpoint runs/unipixel-tiny --out pixelwise/checkpoints/unipixel-tiny

The run's `model_init/` (or, for a run that started from a model folder, that folder) holds config + tokenizer files;
the checkpoint's `model.safetensors` the weights (in the
training module's names, i.e. the model's own). The result is written in the official layout, atomically per file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pixelwise.core.errors import CheckpointError
from pixelwise.recipes.train_unipixel import copy_processor_files
from pixelwise.train import tiny
from pixelwise.train.state import latest_checkpoint


def export(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    from safetensors.torch import load_file


    run_dir, out = Path(run_dir), Path(out)
    ck = run_dir / "checkpoints" / f"step_{step:07d}" if step is not None else latest_checkpoint(run_dir)
    if ck is None or not (ck / "model.safetensors").is_file():
        raise CheckpointError(f"{run_dir}: no checkpoint to export")
    init = run_dir / "model_init"  # a run from scratch; a run from a model folder names it in its config.yaml
    if not (init / "config.json").is_file() and (run_dir / "config.yaml").is_file():
        import yaml

        init = Path(yaml.safe_load((run_dir / "config.yaml").read_text()).get("_model_folder") or init)
    if not (init / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: no model_init/ and no readable _model_folder in config.yaml")
    model = tiny.build_model(json.loads((init / "config.json").read_text()))
    missing, unexpected = model.load_state_dict(load_file(str(ck / "model.safetensors")), strict=False)
    missing = [k for k in missing if "rotary" not in k and k != "lm_head.weight"]
    if missing or unexpected:
        raise CheckpointError(f"{ck}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.stop_token_ids = json.loads((init / "generation_config.json").read_text())["eos_token_id"]
    model.eval()
    model.save_pretrained(out)
    copy_processor_files(init, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    args = ap.parse_args(argv)
    print(export(args.run_dir, args.out, args.step))


if __name__ == "__main__":
    main()
