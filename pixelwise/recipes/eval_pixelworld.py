"""Score a model on PixelWorld through the public benchmark layouts (what the model card reports).

    python -m pixelwise.recipes.eval_pixelworld --model pixelwise/checkpoints/pixelworld-tiny --out runs/eval \
        --splits val test holdout --num 100 --seed 0

For every split it generates (once, deterministic in `(seed, split, num)`) and exports:

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

ROWS = {
    "image_referring": {"tasks": "referring", "video": False, "format": "refcoco", "bench": "refcoco:{split}"},
    "video_referring": {"tasks": "referring", "video": True, "format": "mevis", "bench": "mevis"},
    "motion_referring": {"tasks": "motion_referring", "video": True, "format": "mevis", "bench": "mevis"},
    "region_qa": {"tasks": "region", "video": True, "format": "videorefer", "bench": "videorefer-bench-q"},
    "pixelqa": {"tasks": "pixelqa", "video": True, "format": "videorefer", "bench": "pixelqa"},
}


class DirectUniPixelPredictor:
    """A small `Predictor` that drives a UniPixel checkpoint directly with the official evaluation flow (used when
    `pixelwise.load` is unavailable; `--direct` forces it).

    Segmentation: the official request ("Please segment the {q} in this image/video."), 16 uniformly sampled frames
    for the LLM, SAM2 propagated over every frame. VideoRefer (mask prompts): `<|mem|>` prefix with the mask on its
    frame, options block, answer primed with "The best option is (". PixelQA (point/box prompts): round 1 localizes
    the object with `[0] <|ref|>` and a teacher-forced `[0] <|seg|>`, its masks become the `<|mem|>` memory of
    round 2 (the multiple choice), and the object's track over every frame is the segmentation answer.
    """

    def __init__(self, path: str | Path, num_frames: int = 16, max_new_tokens: int = 64):
        from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor

        self.model = UniPixelForConditionalGeneration.from_pretrained(path)
        self.processor = UniPixelProcessor.from_pretrained(path)
        self.num_frames = num_frames
        self.max_new_tokens = max_new_tokens
        self.stops = self.model.default_stop_token_ids()

    def _frames(self, total: int, keep: list[int]) -> list[int]:
        from pixelwise.train.unipixel_data import sample_frame_indices

        return sample_frame_indices(total, self.num_frames, keep, None)

    def _answer(self, inputs):
        import torch

        with torch.no_grad():
            pred = self.model.predict(inputs, max_new_tokens=self.max_new_tokens, include_prompt_segs=False)
        text, _ = self.processor.decode_answer(pred.generated_ids.tolist(), self.stops)
        return pred, text

    def _track_all(self, states, frames):
        import torch

        with torch.no_grad():
            seg = self.model.segment(states, self.processor.sam2_frames(frames), frames.shape[1:3])
        return seg.masks.cpu().numpy()

    def predict(self, sample):
        import re

        import numpy as np
        import torch

        from pixelwise.core.prompts import Box, MaskPrompt, Point
        from pixelwise.core.results import Result, SegObject
        from pixelwise.data.templates import localize_text, mcq_text, official_seg_question
        from pixelwise.models.unipixel.processing_unipixel import (
            masks_for_memory,
            mem_prefix,
            ref_prompt,
            video_message,
        )

        frames = sample.clip().frames
        total, size = frames.shape[0], frames.shape[1:3]
        result = Result(answer="", objects=[], frame_indices=list(range(total)), size=tuple(size))
        if not sample.prompts and not sample.options:  # segmentation
            idx = self._frames(total, [])
            q = official_seg_question(sample.text, total == 1)
            inputs = self.processor(frames[idx], [video_message(q, len(idx))])
            pred, text = self._answer(inputs)
            result.answer = text
            states = pred.generation.seg_states[[i for i, t in enumerate(pred.generation.seg_token_index) if t >= 0]]
            if states.shape[0]:
                masks = self._track_all(states, frames)
                result.objects = [SegObject(id=k, masks=masks[k]) for k in range(masks.shape[0])]
            return result
        p = sample.prompts[0]
        idx = self._frames(total, [p.frame])
        remap = {t: k for k, t in enumerate(idx)}
        sel = frames[idx]
        n = len(idx)
        question = re.sub(r"<object\d+><region>|<region>", "[0]", sample.text)
        options = list(sample.options or [])
        _, _, thw = self.processor.process_frames(sel)
        track = None
        if isinstance(p, MaskPrompt):
            label = masks_for_memory([[MaskPrompt(p.mask, remap[p.frame])]], n, size)
        else:  # PixelQA round 1: localize the region, its masks become the memory
            q_ref = question.replace("[0]", "[0] <|ref|>", 1)
            msgs = [video_message(localize_text(q_ref, options), n), {"role": "assistant", "content": "[0] <|seg|>"}]
            inputs = self.processor(sel, msgs, add_generation_prompt=False)
            pp = Point(p.x, p.y, remap[p.frame]) if isinstance(p, Point) else Box(p.x1, p.y1, p.x2, p.y2, remap[p.frame])
            inputs.ref_prompts = [ref_prompt(pp, size, self.processor.sam2_image_size, n)]
            with torch.no_grad():
                out = self.model(inputs)
                states = out.prenorm_hidden[out.seg_positions]
                local = self.model.segment(states, inputs.sam2_frames, size).masks[0].cpu()  # [n, H, W]
            label = local[:, None].clone()
            if not label.any():
                label[:] = True
            track = self._track_all(states, frames)[0]
        _, refer_mask = self.processor.memory_inputs(label, thw)
        text = mem_prefix(refer_mask, n, total == 1) + mcq_text(question, options)
        inputs = self.processor(sel, [video_message(text, n)], assistant_prefix="The best option is (")
        inputs.refer_mask = refer_mask
        _, answer = self._answer(inputs)
        result.answer = answer
        if track is not None:
            result.objects = [SegObject(id=0, masks=track)]
        return result


def load_predictor(path: str | None, direct: bool = False):
    """`pixelwise.load(path)` when it works, else (or with `direct`) the `DirectUniPixelPredictor`."""
    if path is None:
        path = str(Path(__file__).resolve().parents[1] / "checkpoints" / "pixelworld-tiny")
    if not direct:
        try:
            import pixelwise

            return pixelwise.load(path), "pixelwise.load"
        except Exception as e:  # noqa: BLE001  (the pipeline may be unavailable in this build)
            print(f"pixelwise.load unavailable ({type(e).__name__}: {e}); using the direct predictor", flush=True)
    return DirectUniPixelPredictor(path), "direct"


def headline(metrics: dict) -> dict[str, float]:
    """The numbers the model card reports, as fractions."""
    out = {}
    for key in ("cIoU", "gIoU", "J&F", "J", "F", "accuracy", "Acc", "acc"):
        if key in metrics and isinstance(metrics[key], (int, float)):
            out[key] = float(metrics[key]) / 100.0
    return out


def generate(root: Path, split: str, row: dict, num: int, seed: int) -> Path:
    from pixelwise.data.pixelworld.export import export
    from pixelwise.data.pixelworld.generate import GenConfig, generate as gen

    if not (root / "samples.jsonl").is_file():
        gen(root, GenConfig(split=split, num=num, seed=seed, tasks=(row["tasks"],), video=row["video"]))
    out = root / row["format"]
    if not out.exists():
        export(root, row["format"])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped default model)")
    ap.add_argument("--out", default="runs/eval-pixelworld")
    ap.add_argument("--splits", nargs="+", default=["val", "test", "holdout"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS))
    ap.add_argument("--num", type=int, default=100, help="samples generated per row and split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N samples of each row")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--direct", action="store_true", help="drive the model directly, not through pixelwise.load")
    ap.add_argument("--parts", action="store_true", help="also measure each part's upper bound (pixelworld_parts)")
    args = ap.parse_args(argv)

    import torch

    from pixelwise.eval import runner
    from pixelwise.eval.benchmarks import get_benchmark
    from pixelwise.recipes import pixelworld_parts as parts

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    model, how = load_predictor(args.model, args.direct)
    summary: dict = {"model": str(args.model or "default"), "predictor": how, "num": args.num, "seed": args.seed,
                     "limit": args.limit,
                     "splits": {}}
    for split in args.splits:
        for name in args.rows:
            row = ROWS[name]
            data = generate(out / "data" / f"{split}-{name}", split, row, args.num, args.seed)
            bench = row["bench"].format(split=split)
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
        if args.parts and how == "pixelwise.load":
            img = out / "data" / f"{split}-image_referring"
            vid = out / "data" / f"{split}-video_referring"
            for root, name in ((img, "image_referring"), (vid, "video_referring")):
                generate(root, split, ROWS[name], args.num, args.seed)
            limit = min(args.num, 50)
            up = {"sam2_given_truth": {"image": parts.sam2_upper_bound(model.model, img, limit),
                                       "video": parts.sam2_upper_bound(model.model, vid, limit // 2)},
                  "llm_box_text": parts.llm_grounding(model, img, limit),
                  "visual_prompts_api": parts.visual_prompts(model, img, 10)}
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
