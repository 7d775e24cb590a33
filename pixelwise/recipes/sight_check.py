"""Can the UniPixel LLM see? A task that only the image answers, learned and scored on held-out images.

    python -m pixelwise.recipes.sight_check                       # a small model from scratch
    python -m pixelwise.recipes.sight_check --model pixelwise/checkpoints/unipixel-tiny --steps 300

Every example is one PixelWorld object (random colour, shape, size and place) on a flat background, asked the same
question ("What color is the object?" / "What shape is the object?"); the answer is one word. The text is identical
across examples, so a model that does not read its visual tokens stays at chance (1/9). The recipe's own parts
train it (`build_model`, `UniPixelTrainModule`, `build_optimizer`); the score is the greedy answer word on images it
never saw. If a small model from scratch cannot learn this in a few hundred steps, the visual path (tower, merger,
placement of the visual tokens, positions, attention) is broken; if it can and a trained model cannot, the trained
model has learned to ignore its image.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Obj, Scene, quantize
from pixelwise.data.templates import Conversation
from pixelwise.recipes.overfit_unipixel import OVERFIT_SIZES
from pixelwise.recipes.train_unipixel import build_model, select_trainable
from pixelwise.train import distributed as D
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.unipixel_data import ExampleBuilder
from pixelwise.train.unipixel_loss import LossConfig, UniPixelTrainModule

QUESTIONS = {"color": "What color is the object?", "shape": "What shape is the object?"}


def lone_object(rng: random.Random, size: int = 128, fill: bool = False) -> tuple[np.ndarray, Obj]:
    """One random object on a flat gray background -> (frames uint8 [1, H, W, 3], the object). `fill`: a square
    larger than the frame (every visual token sees the colour; the easiest case)."""
    if fill:
        r, x, y = 0.7 * size, size / 2, size / 2
    else:
        r = vocab.radius_for(rng.choice(vocab.SIZES), size)
        x, y = rng.uniform(r, size - r), rng.uniform(r, size - r)
    obj = Obj(id=0, shape="square" if fill else rng.choice(vocab.SHAPES), color=rng.choice(list(vocab.COLORS)),
              size="medium", texture="solid", z=0, x=quantize(np.array([x])), y=quantize(np.array([y])),
              r=quantize(np.array([r])))
    scene = Scene(size, size, 1, {"kind": "flat", "color": [150, 150, 150], "seed": 0}, [obj])
    frames, _, _ = render(scene)
    return frames, obj


def examples(builder: ExampleBuilder, n: int, seed: int, kind: str, fill: bool = False):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        frames, obj = lone_object(rng, fill=fill)
        word = obj.color if kind == "color" else obj.shape
        conv = Conversation(f"sight_{kind}", [(QUESTIONS[kind], f"It is {word}.")])
        out.append((builder(frames, conv, None, "sight"), word))
    return out


@torch.no_grad()
def accuracy(module: UniPixelTrainModule, held_out, processor) -> float:
    """Share of held-out examples whose whole answer is the model's greedy choice, token by token (teacher forced:
    exactly when greedy decoding writes it)."""
    module.eval()
    right = 0
    for ex, _ in held_out:
        out = module.model(ex.inputs)
        ids = ex.inputs.input_ids.reshape(-1)
        pos = ex.labels_mask.reshape(-1).nonzero().flatten()
        logits = out.logits.reshape(-1, out.logits.shape[-1])  # [L, V]: position i predicts token i + 1
        right += bool((logits[pos - 1].argmax(-1) == ids[pos]).all())
    module.train()
    return right / len(held_out)


def sight_check(work: Path, model_path: str | None = None, kind: str = "color", steps: int = 300, batch: int = 8,
                lr: float = 1e-3, seed: int = 0, train_size: int = 512, held_out: int = 100, log_every: int = 0,
                sizes: dict | None = None, fill: bool = False) -> dict:
    torch.manual_seed(seed)
    model_cfg = {"init": model_path} if model_path else {"init": "scratch", "vocab_size": 400,
                                                         "sizes": {**OVERFIT_SIZES, **(sizes or {})},
                                                         "partial_checkpoints": []}
    corpus_root = work / "corpus"
    corpus_root.mkdir(parents=True, exist_ok=True)
    cfg = {"seed": seed, "model": model_cfg, "data": {"sources": []}}
    model, processor, _ = build_model(cfg, work / "run", D.DistInfo())
    model = select_trainable(model, {"trainable": [".*"], "frozen": ["^sam2\\."]})
    builder = ExampleBuilder(processor, video_frames=(1,))
    train = examples(builder, train_size, seed, kind, fill)
    test = examples(builder, held_out, seed + 1, kind, fill)
    module = UniPixelTrainModule(model, LossConfig.from_dict({"seg_weight": 0.0}))
    opt = build_optimizer(module, OptimConfig(lr=lr))
    sched = cosine_with_warmup(opt, steps, warmup_steps=min(20, steps // 10), min_lr_ratio=0.1)
    before = accuracy(module, test, processor)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        loss, metrics, _ = module([ex for ex, _ in rng.sample(train, batch)])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        losses.append(metrics["loss_lm"])
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: lm {np.mean(losses[-log_every:]):.4f}", flush=True)
    after = accuracy(module, test, processor)
    return {"kind": kind, "fill": fill, "model": model_path or "scratch", "steps": steps, "batch": batch, "lr": lr,
            "held_out_accuracy_before": before, "held_out_accuracy_after": after, "chance": 1 / 9,
            "last_lm": float(np.mean(losses[-20:])), "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a UniPixel folder to fine-tune (default: a small model from scratch)")
    ap.add_argument("--kind", choices=sorted(QUESTIONS), default="color")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", default="runs/sight-check")
    ap.add_argument("--sizes", default="{}", help="JSON overrides of the scratch model's sizes (TinySizes)")
    ap.add_argument("--fill", action="store_true", help="the object fills the frame (the easiest case)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(sight_check(Path(args.work), args.model, args.kind, args.steps, args.batch, args.lr, args.seed,
                                 log_every=25, sizes=json.loads(args.sizes), fill=args.fill), indent=2))


if __name__ == "__main__":
    main()
