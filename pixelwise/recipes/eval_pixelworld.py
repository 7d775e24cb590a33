"""Score a model on PixelWorld through the public benchmark layouts (what the model card reports).

    python -m pixelwise.recipes.eval_pixelworld --model pixelwise/checkpoints/unipixel-tiny --out runs/eval \
        --splits val test holdout --num 100 --seed 0

For every split it generates (once, deterministic in `(seed, split, num)`; `data.pixelworld.rows`, the table
`pixelwise bench compare` uses too) and exports:
| row | generate | layout / benchmark | headline |
|---|---|---|---|
| image referring | images, task `referring` | `refcoco:<split>` | cIoU |
| video referring | clips, task `referring` | `mevis` | J&F |
| motion referring | clips, task `motion_referring` | `mevis` | J&F |
| region QA | clips, task `region` | `videorefer-bench-q` (mask prompts) | accuracy |
| PixelQA | clips, task `pixelqa` | `pixelqa` (box prompts) | accuracy (+ J&F of the tracked object) |

and runs `pixelwise eval` (the runner behind it) with the model loaded by `pixelwise.load`. Results go to
`OUT/<split>/<row>.json` and a summary `OUT/summary.json`; the referring rows are also broken down by expression kind
(attr / relation / ordinal / motion ...). `--parts` adds the per-part upper bounds of `pixelworld_parts` (SAM2 given
the true box or click, the LLM's box as text, point/box prompts through the API) for each split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pixelwise
from pixelwise.data.pixelworld.rows import BY_NAME, CARD_ROWS, ROWS, generate_row
from pixelwise.eval import runner
from pixelwise.eval.benchmarks import get_benchmark
from pixelwise.recipes import pixelworld_parts as parts


def load_predictor(path: str | None):
    """The model through `pixelwise.load` (the one inference path; default: the shipped default model)."""

    return pixelwise.load(path)


def headline(metrics: dict) -> dict[str, float]:
    """The numbers the model card reports, as fractions."""
    out = {}
    for key in ("cIoU", "gIoU", "J&F", "J", "F", "accuracy", "Acc", "acc"):
        if key in metrics and isinstance(metrics[key], (int, float)):
            out[key] = float(metrics[key]) / 100.0
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped default model)")
    ap.add_argument("--out", default="runs/eval-pixelworld")
    ap.add_argument("--splits", nargs="+", default=["val", "test", "holdout"])
    ap.add_argument("--rows", nargs="+", default=list(CARD_ROWS), choices=[r.name for r in ROWS if r.fmt])
    ap.add_argument("--num", type=int, default=100, help="samples generated per row and split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N samples of each row")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", action="store_true", help="also measure each part's upper bound (pixelworld_parts)")
    args = ap.parse_args(argv)

    import torch


    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = load_predictor(args.model)
    summary: dict = {"model": str(args.model or "default"), "num": args.num, "seed": args.seed,
                     "limit": args.limit,
                     "splits": {}}
    for split in args.splits:
        for name in args.rows:
            row = BY_NAME[name]
            data = generate_row(out / "data" / f"{split}-{name}", split, row, args.num, args.seed)
            bench = row.bench.format(split=split)
            t0 = time.perf_counter()
            b = get_benchmark(bench)
            samples = b.read(data)[: args.limit or None]
            pred_dir = out / "pred" / split / name
            counts = runner.predict(b, data, model, pred_dir, samples=samples)
            report = runner.score(b, data, pred_dir, samples=samples)
            report.update(counts)
            runner.write_report(report, out / split / f"{name}.json")
            h = headline(report["metrics"])
            if name.endswith("referring"):
                h["kinds"] = parts.kind_breakdown(report, parts.native_samples(data.parent))
            h.update(samples=report["samples"], seconds=round(time.perf_counter() - t0, 1))
            summary["splits"].setdefault(split, {})[name] = h
            print(f"{split:8s} {name:17s} " + "  ".join(_fmt(k, v) for k, v in h.items()), flush=True)
            (out / f"summary-{'-'.join(args.splits)}.json").write_text(json.dumps(summary, indent=2))
        if args.parts:
            img = out / "data" / f"{split}-image_referring"
            vid = out / "data" / f"{split}-video_referring"
            for root, name in ((img, "image_referring"), (vid, "video_referring")):
                generate_row(root, split, BY_NAME[name], args.num, args.seed)
            limit = min(args.num, 50)
            up = {"sam2_given_truth": {"image": parts.sam2_upper_bound(model.model, img, limit),
                                       "video": parts.sam2_upper_bound(model.model, vid, limit // 2)},
                  "llm_box_text": parts.llm_grounding(model, img, limit),
                  "object_choice": parts.object_choice(model, img, args.num),
                  "visual_prompts_api": parts.visual_prompts(model, img, 10),
                  "region_naming": parts.region_naming(model, img, 10),
                  "input_dependence": parts.input_dependence(model.model, model.processor, img),
                  "letter_choice": parts.letter_choice(model.model, model.processor, img)}
            summary["splits"][split]["parts"] = up
            print(f"{split:8s} parts             {json.dumps(up)}", flush=True)
            (out / f"summary-{'-'.join(args.splits)}.json").write_text(json.dumps(summary, indent=2))
    return summary


def _fmt(key: str, value) -> str:
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    if isinstance(value, dict):  # per-kind breakdown
        return key + " {" + ", ".join(f"{k}: {next(iter(v.values())):.3f} (n={v['n']})" for k, v in value.items()) + "}"
    return f"{key} {value}"


if __name__ == "__main__":
    main()
