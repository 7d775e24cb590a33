"""Train a tiny Pixel-SAIL on PixelWorld images (CPU-sized), with SAM2-encoder distillation.

    python -m pixelwise.recipes.pixelsail.train_pixelsail --data runs/pw/ps-train \\
        --teacher pixelwise/checkpoints/unipixel-tiny --run runs/pixelsail-tiny --steps 1500 \\
        --save pixelwise/checkpoints/pixelsail-tiny

Recipe (paper §3.3, scaled down): single stage, every parameter trained from scratch (there is no public
encoder-free base model to start from), AdamW + linear warm-up + cosine (`pixelwise.train.optim`), grad clip 1.0.
Loss = lambda_text * CE (0.1 when the sample has masks, else 1.0) + 2.0 * BCE + 0.5 * Dice on uncertainty-sampled
points + 0.5 * MSE(patch states -> SAM2 embedding) + 0.5 * MSE(upsampled features -> SAM2 stride-4 features).
Resumable: `--run` holds atomic step checkpoints (`pixelwise.train.state`) and the sampler position.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch

from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.models.pixelsail.distill import distillation_loss, load_sam2_teacher, teacher_features
from pixelwise.modules.losses import lm_loss
from pixelwise.modules.point_losses import point_sampled_mask_loss
from pixelwise.recipes.pixelsail.build import new_pixelsail
from pixelwise.train.logging import RunLogger
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import load_checkpoint, resume_checkpoint, save_checkpoint

TASKS = ("referring", "reasoning", "multi_target", "region")
EVAL_TEMPLATES = ("Please segment {}.", "Segment {}.")  # what the pipeline asks for a bare expression


def corpus(ds: PixelWorldDataset) -> list[str]:
    texts = []
    for i in range(len(ds)):
        r = ds.record(i)
        texts += [r["question"], r["answer"]]
        if r.get("phrase"):
            texts += [t.format(r["phrase"]) for t in EVAL_TEMPLATES]
    return texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="native PixelWorld folder (image tasks)")
    ap.add_argument("--teacher", default=None, help="UniPixel checkpoint whose SAM2 encoder is the expert")
    ap.add_argument("--teacher-config", default=None, help="config.json of --teacher when the folder has none")
    ap.add_argument("--run", required=True)
    ap.add_argument("--save", default=None, help="write the final model here (config + safetensors + tokenizer)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-minutes", type=float, default=12.0)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="{}", help="JSON overrides of PixelSailConfig sizes")
    ap.add_argument("--tasks", default=",".join(TASKS), help="PixelWorld tasks to train on (comma-separated)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    tasks = tuple(t for t in args.tasks.split(",") if t)
    ds = PixelWorldDataset(args.data, tasks=tasks)
    teacher = load_sam2_teacher(args.teacher, args.teacher_config) if args.teacher else None
    sizes = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 352,
             "patch_size": 8, "image_size": 128, "seg_channels": 64, "upsampler_channels": 96}
    sizes.update(json.loads(args.sizes))
    if teacher is not None:
        sizes["distill_dim"] = teacher.hidden_dim
        sizes["distill_fine_dim"] = teacher.hidden_dim // 8
    model, proc = new_pixelsail(corpus(ds), seed=args.seed, **sizes)
    model.config.notes = {"teacher": str(args.teacher), "teacher_config": str(args.teacher_config), "data": str(args.data), "tasks": list(tasks),
                          "steps": args.steps, "batch": args.batch}
    model.train()
    opt = build_optimizer(model, OptimConfig(lr=args.lr, weight_decay=0.05, warmup_steps=max(1, args.steps // 20)))
    sched = cosine_with_warmup(opt, args.steps, max(1, args.steps // 20), min_lr_ratio=0.05)
    sampler = ResumableSampler(len(ds), seed=args.seed)
    step = 0
    ckpt = resume_checkpoint(args.run)
    if ckpt is not None:
        st = load_checkpoint(ckpt, model, opt, sched)
        step = st.step
        sampler.load_state_dict(st.sampler)
        print(f"resumed from {ckpt} at step {step}")
    logger = RunLogger(args.run, {**vars(args), "sizes": sizes}, args.steps, tensorboard=False, progress=False)
    rng = random.Random(args.seed + step)
    it = iter(sampler)
    last_save = time.perf_counter()
    while step < args.steps:
        if (time.perf_counter() - t_start) / 60 > args.max_minutes:
            print(f"time budget reached at step {step}")
            break
        items = [ds[next(it)] for _ in range(args.batch)]
        inputs = [proc.build(x.frames[0], x.question, x.answer, x.prompts, rng=rng) for x in items]
        out = model(inputs)
        ce, seg, dist_c, dist_f = [], [], [], []
        frames = torch.from_numpy(np.stack([x.frames[0] for x in items]))
        t_embed, t_fine = teacher_features(teacher, frames) if teacher is not None else (None, None)
        for b, (x, inp) in enumerate(zip(items, inputs)):
            n = inp.length
            seg_pos = ((inp.input_ids == model.seg_id) & inp.labels_mask).nonzero()[:, 0]
            has_masks = len(seg_pos) > 0  # region answers are text only: their target is the prompted object
            ce.append((0.1 if has_masks else 1.0) * lm_loss(out.logits[b, :n], inp.input_ids, inp.labels_mask))
            s, e = inp.vision_span
            vis = out.hidden[b, s:e]
            dense = model.dense_features(vis, inp.grid)
            if has_masks and len(seg_pos) != x.masks.shape[0]:
                raise RuntimeError(f"{x.sample['id']}: {len(seg_pos)} [SEG] for {x.masks.shape[0]} targets")
            if len(seg_pos):
                logits = model.mask_logits(out.hidden[b, seg_pos], dense)
                seg.append(point_sampled_mask_loss(logits, torch.from_numpy(x.masks[:, 0]), args.points)["mask"])
            if teacher is not None:
                gh, gw = inp.grid
                coarse = model.distill_coarse(vis).t().reshape(-1, gh, gw)
                dist_c.append(0.5 * distillation_loss(coarse, t_embed[b]))
                dist_f.append(0.5 * distillation_loss(model.distill_fine(dense[None])[0], t_fine[b]))
        loss_ce = torch.stack(ce).mean()
        loss_seg = torch.stack(seg).mean() if seg else loss_ce * 0
        loss_dist = (torch.stack(dist_c).mean() + torch.stack(dist_f).mean()) if dist_c else loss_ce * 0
        loss = loss_ce + loss_seg + loss_dist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 10 == 0 or step == 1:
            logger.log(step, {"loss": loss.item(), "ce": loss_ce.item(), "mask": loss_seg.item(),
                              "distill": loss_dist.item(), "grad_norm": float(gn), "lr": sched.get_last_lr()[0]},
                       samples_seen=step * args.batch)
            print(f"step {step} loss {loss.item():.4f} ce {loss_ce.item():.4f} mask {loss_seg.item():.4f} "
                  f"distill {loss_dist.item():.4f} {time.perf_counter() - t_start:.0f}s", flush=True)
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
