"""Train a tiny VITRON (router + signal embedding + segmentation back-end) on PixelWorld images and clips.

    python -m pixelwise.recipes.vitron.train_vitron --data runs/pw/vit-img runs/pw/vit-vid \\
        --run runs/vitron-tiny --steps 600 --save pixelwise/checkpoints/vitron-tiny

Supervision per request (labels from the PixelWorld sample, `instruction.instruction_from_request`):
referring -> `segment: <expression>` + [SIG] (mask loss on the target); editing remove/recolor/move -> the edit
command + [SIG] (mask loss on the referred object in the *source* media); add -> an `add` command (no [SIG]);
region questions -> the text answer (understanding, with the region sketch encoder); and a few synthetic
"Generate an image of ..." requests on a blank frame -> a `generate` command. Clips are trained on 4 frames.
Loss = CE + 2.0 * BCE + 0.5 * Dice (point-sampled) + 0.1 * synergy CE through gradient reversal (paper's L_syn).
The back-end editing/generation specialists are not trained (they are exact renderers and OpenCV).
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.models.vitron.backends import SHAPES, SIZES
from pixelwise.models.vitron.configuration_vitron import TASKS
from pixelwise.models.vitron.instruction import COLORS, PLACES, Instruction, instruction_from_request
from pixelwise.modules.losses import lm_loss
from pixelwise.modules.point_losses import point_sampled_mask_loss
from pixelwise.recipes.vitron.build import new_vitron
from pixelwise.train.logging import RunLogger
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import load_checkpoint, resume_checkpoint, save_checkpoint

DATA_TASKS = ("referring", "editing", "region")
BLANK = (150, 150, 150)


def random_description(rng: random.Random) -> str:
    n = rng.randint(1, 3)
    places = rng.sample(list(PLACES), n)
    parts = [f"a {rng.choice(SIZES)} {rng.choice(COLORS)} {rng.choice(SHAPES)} at the {p}" for p in places]
    return " and ".join(parts)


def example(item, rng: random.Random, frames_per_clip: int):
    """(frames, question, answer, prompts, target masks [T, H, W] | None, op) for one dataset item."""
    s = item.sample
    frames, masks = item.frames, item.masks
    if frames.shape[0] > frames_per_clip:
        idx = sorted(rng.sample(range(frames.shape[0]), frames_per_clip))
        frames, masks = frames[idx], masks[:, idx]
    q = s["question"]
    if s["task"] == "region":
        return frames, q, s["answer"], item.prompts, None, None
    if s["task"] == "referring":
        ins = Instruction("segment", s["phrase"])
    else:
        ins = instruction_from_request(q)
        if ins is None:
            return None
    target = masks[0] if ins.needs_signal and masks.shape[0] == 1 else None
    if ins.needs_signal and target is None:
        return None
    return frames, q, ins.to_text(), [], target, ins.op


def generation_example(rng: random.Random, size: int = 128):
    desc = random_description(rng)
    q = rng.choice(["Generate an image of {}.", "Create a picture of {}.", "Render a scene with {}."]).format(desc)
    frames = np.full((1, size, size, 3), BLANK, np.uint8)
    return frames, q, Instruction("generate", desc).to_text(), [], None, "generate"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="native PixelWorld folders (images and/or clips)")
    ap.add_argument("--run", required=True)
    ap.add_argument("--save", default=None)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-minutes", type=float, default=12.0)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=4, help="frames per clip in training")
    ap.add_argument("--generation-rate", type=float, default=0.06)
    ap.add_argument("--synergy-weight", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="{}")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    sets = [PixelWorldDataset(d, tasks=DATA_TASKS) for d in args.data]
    index = [(k, i) for k, ds in enumerate(sets) for i in range(len(ds))]
    rng = random.Random(args.seed)
    texts = []
    for ds in sets:
        for i in range(len(ds)):
            r = ds.record(i)
            texts += [r["question"], r["answer"]]
            ins = (Instruction("segment", r["phrase"]) if r["task"] == "referring"
                   else instruction_from_request(r["question"]) if r["task"] == "editing" else None)
            if ins is not None:
                texts.append(ins.to_text())
    for _ in range(300):
        f, q, a, *_ = generation_example(rng)
        texts += [q, a]
    sizes = {"synergy_hidden": 64}
    sizes.update(json.loads(args.sizes))
    model, proc = new_vitron(texts, seed=args.seed, **sizes)
    model.config.notes = {"data": list(args.data), "tasks": list(DATA_TASKS), "steps": args.steps,
                          "batch": args.batch, "frames_per_clip": args.frames}
    model.train()
    warm = max(1, args.steps // 20)
    opt = build_optimizer(model, OptimConfig(lr=args.lr, weight_decay=0.05, warmup_steps=warm))
    sched = cosine_with_warmup(opt, args.steps, warm, min_lr_ratio=0.05)
    sampler = ResumableSampler(len(index), seed=args.seed)
    step = 0
    ckpt = resume_checkpoint(args.run)
    if ckpt is not None:
        st = load_checkpoint(ckpt, model, opt, sched)
        step = st.step
        sampler.load_state_dict(st.sampler)
    logger = RunLogger(args.run, {**vars(args), "sizes": sizes}, args.steps, tensorboard=False, progress=False)
    rng = random.Random(args.seed + step)
    it = iter(sampler)
    last_save = time.perf_counter()
    loss = torch.zeros(())
    while step < args.steps:
        if (time.perf_counter() - t_start) / 60 > args.max_minutes:
            print(f"time budget reached at step {step}")
            break
        batch = []
        while len(batch) < args.batch:
            if rng.random() < args.generation_rate:
                batch.append(generation_example(rng))
                continue
            k, i = index[next(it)]
            ex = example(sets[k][i], rng, args.frames)
            if ex is not None:
                batch.append(ex)
        inputs = [proc.build(f, q, a, p) for f, q, a, p, _, _ in batch]
        out = model(inputs)
        ce, seg, syn_logits, syn_labels = [], [], [], []
        for b, ((_, _, _, _, target, op), inp) in enumerate(zip(batch, inputs)):
            ce.append(lm_loss(out.logits[b, : inp.length], inp.input_ids, inp.labels_mask))
            sig = ((inp.input_ids == model.sig_id) & inp.labels_mask).nonzero()[:, 0]
            if target is None or len(sig) != 1:
                continue
            v = model.signal(out.hidden[b, sig])  # [1, 2s]
            logits = model.segment(v, out.frame_features[b], inp.grid, patches=inp.patches)[0]  # [T, H', W']
            seg.append(point_sampled_mask_loss(logits, torch.from_numpy(target), args.points)["mask"])
            if model.synergy is not None and op in TASKS:
                syn_logits.append(model.synergy_logits(v)[0])
                syn_labels.append(TASKS.index(op))
        loss_ce = torch.stack(ce).mean()
        loss_seg = torch.stack(seg).mean() if seg else loss_ce * 0
        loss_syn = (F.cross_entropy(torch.stack(syn_logits), torch.tensor(syn_labels)) if syn_logits
                    else loss_ce * 0)
        loss = loss_ce + loss_seg + args.synergy_weight * loss_syn
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 10 == 0 or step == 1:
            logger.log(step, {"loss": loss.item(), "ce": loss_ce.item(), "mask": loss_seg.item(),
                              "synergy": loss_syn.item(), "grad_norm": float(gn), "lr": sched.get_last_lr()[0]},
                       samples_seen=step * args.batch)
            print(f"step {step} loss {loss.item():.4f} ce {loss_ce.item():.4f} mask {loss_seg.item():.4f} "
                  f"syn {loss_syn.item():.4f} {time.perf_counter() - t_start:.0f}s", flush=True)
        if time.perf_counter() - last_save > 120:
            save_checkpoint(args.run, step, model, opt, sched, sampler.state_dict(), {"loss": loss.item()})
            last_save = time.perf_counter()
    save_checkpoint(args.run, step, model, opt, sched, sampler.state_dict(), {"loss": loss.item()})
    wall = time.perf_counter() - t_start
    model.config.notes.update({"steps_done": step, "wall_seconds": round(wall, 1)})
    if args.save:
        model.eval().save_pretrained(args.save, proc)
        print(f"saved {args.save}")
    logger.close()
    print(f"done: {step} steps in {wall:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
