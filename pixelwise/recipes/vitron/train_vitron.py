"""Train a tiny VITRON (router + signal embedding + segmentation back-end) on PixelWorld images and clips.

    pixelwise train pixelwise/recipes/vitron/configs/vitron_tiny.yaml [--resume] [--set key=value ...]

Supervision per request (labels from the PixelWorld sample, `instruction.instruction_from_request`):
referring -> `segment: <expression>` + [SIG] (mask loss on the target); editing remove/recolor/move -> the edit
command + [SIG] (mask loss on the referred object in the *source* media); add -> an `add` command (no [SIG]);
region questions -> the text answer (understanding, with the region sketch encoder); and a few synthetic
"Generate an image of ..." requests on a blank frame -> a `generate` command. Clips are trained on 4 frames.
Loss = CE + 2.0 * BCE + 0.5 * Dice (point-sampled) + 0.1 * synergy CE through gradient reversal (paper's L_syn).
The back-end editing/generation specialists are not trained (they are exact renderers and OpenCV). The loop is the
shared one of `pixelwise.train.family` (exact `--resume`, Ctrl-C saves a checkpoint).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.models.vitron.backends import SHAPES, SIZES
from pixelwise.models.vitron.configuration_vitron import TASKS
from pixelwise.models.vitron.instruction import COLORS, PLACES, Instruction, instruction_from_request, parse_instruction
from pixelwise.models.vitron.modeling_vitron import VitronModel
from pixelwise.models.vitron.processing_vitron import VitronProcessor
from pixelwise.modules.losses import lm_loss
from pixelwise.modules.point_losses import point_sampled_mask_loss
from pixelwise.recipes.vitron.build import new_vitron
from pixelwise.train import family
from pixelwise.train.config import recipe_cli
from pixelwise.train.unipixel_loss import retrieval_loss

DATA_TASKS = ("referring", "editing", "region")
DEFAULTS: dict[str, Any] = {
    "recipe": "vitron",
    "data": ["data/pw-train-img", "data/pw-train-vid"],  # native PixelWorld folders (images and/or clips)
    "tasks": list(DATA_TASKS),
    "frames": 4,  # frames per clip in training
    "generation_rate": 0.06,  # share of requests replaced by synthetic "Generate an image of ..." requests
    "synergy_weight": 0.1,
    # cross-entropy of the mask logits' softmax over the frame against the target's pixels: a query that marks every
    # object (the constant query the mask loss alone settled on, session 10) scores badly, one that picks its target well
    "location_weight": 0.0,
    "points": 2048,
    "steps": 600,
    "batch_size": 8,
    "weight_decay": 0.05,
    "warmup": 30,
    "log_every": 10,
    "ckpt_every": 100,
    "max_seconds": 720,
    "threads": 1,
    "model": {"synergy_hidden": 64},
}
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


class VitronRecipe:
    """What the shared loop (`pixelwise.train.family.train`) needs: `build` (tokenizer over every request and
    command text, model) and `step_loss` (synthetic generation requests mixed in at `generation_rate`)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def build(self, cfg: dict[str, Any]):
        ds = family.datasets(cfg["data"], cfg["tasks"])
        rng = random.Random(cfg["seed"])
        texts = []
        for part in getattr(ds, "datasets", [ds]):
            for i in range(len(part)):
                r = part.record(i)
                texts += [r["question"], r["answer"]]
                ins = (Instruction("segment", r["phrase"]) if r["task"] == "referring"
                       else instruction_from_request(r["question"]) if r["task"] == "editing" else None)
                if ins is not None:
                    texts.append(ins.to_text())
        for _ in range(300):
            _, q, a, *_ = generation_example(rng)
            texts += [q, a]
        model, proc = new_vitron(texts, seed=cfg["seed"], **cfg["model"])
        model.config.notes = {"data": cfg["data"], "tasks": list(cfg["tasks"]), "steps": cfg["steps"],
                              "batch": cfg["batch_size"], "frames_per_clip": cfg["frames"]}
        return model, proc

    def step_loss(self, model, proc, items: list, rng: np.random.Generator):
        cfg = self.cfg
        r = random.Random(int(rng.integers(1 << 62)))
        batch = []
        for item in items:  # each request is replaced by a synthetic generation request at generation_rate
            ex = generation_example(r) if r.random() < cfg["generation_rate"] else example(item, r, cfg["frames"])
            if ex is not None:  # (an edit PixelWorld words differently from the command grammar is skipped)
                batch.append(ex)
        inputs = [proc.build(f, q, a, p) for f, q, a, p, _, _ in batch]
        out = model(inputs)
        ce, seg, loc, syn_logits, syn_labels = [], [], [], [], []
        masked = []  # (batch row, v, target mask, target word ids) of the requests with a [SIG] and a target mask
        for b, ((_, _, _, _, target, op), inp) in enumerate(zip(batch, inputs)):
            ce.append(lm_loss(out.logits[b, : inp.length], inp.input_ids, inp.labels_mask))
            sig = ((inp.input_ids == model.sig_id) & inp.labels_mask).nonzero()[:, 0]
            if target is None or len(sig) != 1:
                continue
            v = model.signal_at(out.hidden[b, : inp.length], inp.labels_mask, int(sig[0]))  # [1, 2s]
            words = torch.tensor(proc.text.encode(parse_instruction(batch[b][2]).target), dtype=torch.long)
            masked.append((b, v, target, words))
            if model.synergy is not None and op in TASKS:
                syn_logits.append(model.synergy_logits(v)[0])
                syn_labels.append(TASKS.index(op))
        queries = (model.seg_queries(torch.cat([m[1] for m in masked]), [m[3] for m in masked]) if masked
                   else None)  # normalised together
        for k, (b, v, target, _) in enumerate(masked):
            inp = inputs[b]
            logits = model.segment(v, out.frame_features[b], inp.grid, patches=inp.patches,
                                   queries=queries[k: k + 1])[0]  # [T, H', W']
            seg.append(point_sampled_mask_loss(logits, torch.from_numpy(target), cfg["points"])["mask"])
            if cfg["location_weight"]:
                where = retrieval_loss(logits.flatten(1), torch.from_numpy(target), tuple(logits.shape[-2:]))
                if where is not None:
                    loc.append(where)
        loss_ce = torch.stack(ce).mean()
        loss_seg = torch.stack(seg).mean() if seg else loss_ce * 0
        loss_syn = (F.cross_entropy(torch.stack(syn_logits), torch.tensor(syn_labels)) if syn_logits
                    else loss_ce * 0)
        loss_loc = torch.stack(loc).mean() if loc else loss_ce * 0
        parts = {"ce": float(loss_ce.detach()), "mask": float(loss_seg.detach()), "synergy": float(loss_syn.detach()),
                 "location": float(loss_loc.detach()), "frontend_cos": token_similarity(out.frame_features[0][0])}
        return loss_ce + loss_seg + cfg["synergy_weight"] * loss_syn + cfg["location_weight"] * loss_loc, parts


def token_similarity(tokens: torch.Tensor) -> float:
    """The mean cosine between the front end's tokens of one frame [N, d]: a health signal logged every step. Long
    from-scratch runs collapsed the front end to one vector for every place (`region_probe`: pooled cosine 1.000
    against 0.45-0.49 in healthy models), which then reads as a stuck region-question score long after it began."""
    n = F.normalize(tokens.detach().float(), dim=-1)
    c = n @ n.T
    return float((c.sum() - c.diagonal().sum()) / max(1, c.numel() - len(c)))


def run(config: str | Path | None = None, overrides: Sequence[str] = (), resume: bool = False,
        overwrite: bool = False) -> Path:
    cfg = family.load_config(config, DEFAULTS, overrides)
    recipe = VitronRecipe(cfg)
    return family.train(cfg, recipe.build, recipe.step_loss, cfg["tasks"], load, resume=resume,
                        overwrite=overwrite)


def load(path: Path) -> tuple[VitronModel, VitronProcessor]:
    """A released VITRON to continue from (`init`); releases drop the synergy head, so it trains without that term."""
    model = VitronModel.from_pretrained(path)
    return model, VitronProcessor.from_pretrained(path, model.config)


def main(argv: list[str] | None = None) -> None:
    recipe_cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
