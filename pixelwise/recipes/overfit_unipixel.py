"""Overfit check for the UniPixel recipe: can the training stack teach a handful of samples by heart?

    python -m pixelwise.recipes.overfit_unipixel --steps 300            # prints the curve and the final check

A model meant to learn must first memorise a few examples: if it cannot, something in the data, the loss or the
gradient flow is broken, and no amount of compute will help. This takes one fixed example of each conversation family
the default model is trained on - image segmentation, clip segmentation, a region question with a mask prompt
(`<|mem|>`), a PixelQA question, a point- and a box-prompted `<|ref|>` localisation - builds a small UniPixel from
scratch with the recipe's own parts (`build_model`, `select_trainable`, `UniPixelTrainModule`, `build_optimizer`,
`cosine_with_warmup`) and trains it on those examples only. Then, in eval mode:
* every answer token is the model's greedy choice given the tokens before it (teacher-forced argmax == label at every
  supervised position: exactly the condition under which greedy decoding reproduces the answer);
* every `<|seg|>` mask (the candidate SAM2's IoU head keeps, no-object masking on, as at inference) has IoU >= the
  threshold with its target on every supervised frame.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.data.pixelworld.generate import GenConfig, generate
from pixelwise.data.templates import pixelworld_conversations
from pixelwise.recipes.train_unipixel import build_model, select_trainable
from pixelwise.train import distributed as D
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.unipixel_data import Example, ExampleBuilder
from pixelwise.train.unipixel_loss import LossConfig, UniPixelTrainModule, unwrap_core

# data types of the handful, and the PixelWorld tasks that produce them
FAMILIES = {
    "seg_image": ("referring", False),
    "seg_video": ("referring", True),
    "region_video": ("region", True),
    "region_video_qa": ("pixelqa", True),
    "mem_point": ("pixelqa", True),
    "mem_box": ("pixelqa", True),
}

# small enough to run in CI in about a minute; large enough to memorise six conversations
OVERFIT_SIZES = {"llm_hidden": 96, "llm_layers": 2, "llm_heads": 4, "llm_kv_heads": 2, "llm_intermediate": 192,
                 "mrope_section": [2, 5, 5], "vit_hidden": 32, "vit_depth": 2, "vit_heads": 2,
                 "vit_intermediate": 64, "vit_fullatt": [1], "sam2_memory_layers": 1, "sam2_dropout": 0.0}


@dataclass
class OverfitReport:
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    token_accuracy: dict[str, float]  # per example key: fraction of answer tokens predicted exactly
    mask_iou: dict[str, float]  # per example key: the worst frame's IoU over its <|seg|> objects
    last_lm: float = 0.0  # LM cross-entropy per answer token (mean of the last 10 steps)
    last_mask: float = 0.0  # SAM2 focal + dice terms (mean of the last 10 steps; the IoU-head term has a floor)
    curve: list[float] = field(default_factory=list)

    @property
    def answers_exact(self) -> bool:
        return all(v == 1.0 for v in self.token_accuracy.values())

    def min_iou(self) -> float:
        return min(self.mask_iou.values()) if self.mask_iou else 1.0


def generate_handful(root: Path, seed: int = 0) -> list[Path]:
    """Small PixelWorld folders (train split) holding the tasks of `FAMILIES`."""

    img, vid = root / "img", root / "vid"
    if not (img / "samples.jsonl").is_file():
        generate(img, GenConfig(split="train", num=4, seed=seed, tasks=("referring",)))
    if not (vid / "samples.jsonl").is_file():
        generate(vid, GenConfig(split="train", num=12, seed=seed, video=True, num_frames=8,
                                tasks=("referring", "region", "pixelqa")))
    return [img, vid]


def pick_conversations(roots: list[Path], builder: ExampleBuilder) -> list[Example]:
    """One example per family of `FAMILIES`: the first (sample, template seed) whose conversation has that type;
    frames are sampled deterministically (no augmentation), so the handful is the same every time."""

    wanted = dict(FAMILIES)
    out: list[Example] = []
    for root in roots:
        ds = PixelWorldDataset(root)
        for i in range(len(ds)):
            item = ds[i]
            video = item.frames.shape[0] > 1
            for seed in range(40):
                convs = pixelworld_conversations(item.sample, item.masks, item.prompts, random.Random(seed))
                if not convs:
                    continue
                conv = convs[0]
                name = conv.data_type
                if name == "region_video" and item.sample["task"] == "pixelqa":
                    name = "region_video_qa"
                task, want_video = wanted.get(name, (None, None))
                if task != item.sample["task"] or want_video != video:
                    continue
                out.append(builder(item.frames, conv, None, key=f"{name}:{item.sample['id']}"))
                del wanted[name]
                break
    if wanted:
        raise RuntimeError(f"no PixelWorld sample gave the conversation families {sorted(wanted)}")
    return out


@torch.no_grad()
def check(module: UniPixelTrainModule, examples: list[Example]) -> tuple[dict[str, float], dict[str, float]]:
    """Teacher-forced token accuracy and mask IoU per example, in eval mode (inference selection and masking)."""
    model = unwrap_core(module.model)
    model.eval()
    acc, ious = {}, {}
    for ex in examples:
        _, _, extras = module([ex], keep_masks=True)
        out = model(ex.inputs)
        ids = ex.inputs.input_ids.reshape(-1)
        sup = ex.labels_mask[1:]
        pred = out.logits[:-1].argmax(-1)
        acc[ex.key] = float((pred[sup] == ids[1:][sup]).float().mean())
        pm = extras[0].get("pred_masks")
        if pm is not None:  # [O, T, S, S] vs targets [O, T, S, S]
            t = ex.seg_targets
            inter = (pm & t).flatten(2).sum(-1).float()
            union = (pm | t).flatten(2).sum(-1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
            ious[ex.key] = float(iou.min())
    model.train()
    return acc, ious


def overfit(work: Path, steps: int = 300, lr: float = 3e-3, seed: int = 0, threads: int | None = None,
            log_every: int = 0, iou_loss: str = "bce") -> OverfitReport:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    roots = generate_handful(work / "data", seed=seed)
    cfg = {"seed": seed, "model": {"init": "scratch", "vocab_size": 400, "sizes": OVERFIT_SIZES,
                                    "partial_checkpoints": []},
           "data": {"sources": [{"type": "pixelworld", "root": str(r)} for r in roots]}}
    model, processor, _ = build_model(cfg, work / "run", D.DistInfo())
    model = select_trainable(model, {"trainable": [".*"]})
    model.train()
    builder = ExampleBuilder(processor, video_frames=(4,), sample_objects=5, sam2_max_frames=2)
    examples = pick_conversations(roots, builder)
    # the IoU head learns with BCE on its logits (the official L1 saturates from scratch: modules/losses.py)
    module = UniPixelTrainModule(model, LossConfig.from_dict({"sam2": {"iou_loss": iou_loss}}))
    opt = build_optimizer(module, OptimConfig(lr=lr))
    sched = cosine_with_warmup(opt, steps, warmup_steps=10, min_lr_ratio=0.1)
    curve, lm, mask = [], [], []
    t0 = time.perf_counter()
    for step in range(steps):
        loss, metrics, _ = module(examples)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        curve.append(float(loss.detach()))
        lm.append(metrics.get("loss_lm", 0.0))
        mask.append(metrics.get("seg_focal", 0.0) + metrics.get("seg_dice", 0.0))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: loss {curve[-1]:.4f} lm {metrics.get('loss_lm', 0):.4f} "
                  f"seg {metrics.get('loss_seg', 0):.4f}", flush=True)
    seconds = time.perf_counter() - t0
    acc, ious = check(module, examples)
    return OverfitReport(steps, seconds, curve[0], float(np.mean(curve[-10:])), acc, ious,
                         float(np.mean(lm[-10:])), float(np.mean(mask[-10:])), curve)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m pixelwise.recipes.overfit_unipixel", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--iou-loss", default="bce", choices=["bce", "l1"], help="SAM2 IoU-head loss")
    ap.add_argument("--work", type=Path, default=None, help="folder for the data and the model (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = overfit(args.work or Path(tmp), args.steps, args.lr, args.seed, args.threads, log_every=25,
                    iou_loss=args.iou_loss)
    print(f"{r.steps} steps in {r.seconds:.0f} s: loss {r.first_loss:.3f} -> {r.last_loss:.4f} "
          f"(LM {r.last_lm:.4f}, mask focal+dice {r.last_mask:.4f})")
    for k in r.token_accuracy:
        iou = r.mask_iou.get(k)
        print(f"  {k:40s} answer tokens exact {r.token_accuracy[k]:.3f}" + (f"  min mask IoU {iou:.3f}" if iou is not None else ""))


if __name__ == "__main__":
    main()
