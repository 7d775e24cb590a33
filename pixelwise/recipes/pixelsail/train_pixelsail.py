"""Train a tiny Pixel-SAIL on PixelWorld images (CPU-sized), with SAM2-encoder distillation.

    pixelwise train pixelwise/recipes/pixelsail/configs/pixelsail_tiny.yaml [--resume] [--set key=value ...]

Recipe (paper §3.3, scaled down): single stage, every parameter trained from scratch (there is no public
encoder-free base model to start from), AdamW + linear warm-up + cosine (`pixelwise.train.optim`), grad clip 1.0.
Loss = lambda_text * CE (0.1 when the sample has masks, else 1.0) + 2.0 * BCE + 0.5 * Dice on uncertainty-sampled
points + 0.5 * MSE(patch states -> SAM2 embedding) + 0.5 * MSE(upsampled features -> SAM2 stride-4 features).
The loop is the shared one of `pixelwise.train.family` (exact `--resume`, Ctrl-C saves a checkpoint).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.errors import ConfigError
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.models.pixelsail.distill import distillation_loss, load_sam2_teacher, teacher_features
from pixelwise.models.pixelsail.modeling_pixelsail import PixelSailModel
from pixelwise.models.pixelsail.processing_pixelsail import PixelSailProcessor
from pixelwise.modules.losses import lm_loss
from pixelwise.modules.point_losses import point_sampled_mask_loss
from pixelwise.recipes.pixelsail.build import new_pixelsail
from pixelwise.train import family
from pixelwise.train.config import recipe_cli

TASKS = ("referring", "reasoning", "multi_target", "region")
DEFAULTS: dict[str, Any] = {
    "recipe": "pixelsail",
    "tasks": list(TASKS),
    "teacher": None,  # a UniPixel checkpoint whose SAM2 image encoder is the distillation expert
    "teacher_config": None,  # its config.json when the folder has none
    "points": 2048,  # points sampled per mask for the BCE + Dice terms
    "steps": 1500,
    "batch_size": 8,
    "weight_decay": 0.05,
    "warmup": 75,
    "ckpt_every": 100,
    "log_every": 10,
    "max_seconds": 720,
    "threads": 1,
    "model": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 352,
              "patch_size": 8, "image_size": 128, "seg_channels": 64, "upsampler_channels": 96},
}
EVAL_TEMPLATES = ("Please segment {}.", "Segment {}.")  # what the pipeline asks for a bare expression


def corpus(ds: PixelWorldDataset) -> list[str]:
    texts = []
    for i in range(len(ds)):
        r = ds.record(i)
        texts += [r["question"], r["answer"]]
        if r.get("phrase"):
            texts += [t.format(r["phrase"]) for t in EVAL_TEMPLATES]
    return texts


class PixelSailRecipe:
    """What the shared loop (`pixelwise.train.family.train`) needs: `build` (tokenizer + model; the SAM2 teacher
    when the config names one), `load` (a released model to continue, `init`) and `step_loss`."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.teacher = None
        self.points = cfg["points"]

    def build(self, cfg: dict[str, Any]):
        ds = family.datasets(cfg["data"], cfg["tasks"])
        texts = [t for part in getattr(ds, "datasets", [ds]) for t in corpus(part)]
        self.teacher = load_sam2_teacher(cfg["teacher"], cfg["teacher_config"]) if cfg["teacher"] else None
        sizes = dict(cfg["model"])
        if self.teacher is not None:
            sizes["distill_dim"] = self.teacher.hidden_dim
            sizes["distill_fine_dim"] = self.teacher.hidden_dim // 8
        model, proc = new_pixelsail(texts, seed=cfg["seed"], **sizes)
        model.config.notes = {"teacher": str(cfg["teacher"]), "data": cfg["data"], "tasks": list(cfg["tasks"]),
                              "steps": cfg["steps"], "batch": cfg["batch_size"]}
        return model, proc

    def load(self, path: Path) -> tuple[PixelSailModel, PixelSailProcessor]:
        """A released Pixel-SAIL folder to continue (`init`); a teacher needs the distillation heads it was built
        with (`distill_dim` in its config.json)."""
        model = PixelSailModel.from_pretrained(path)
        if self.cfg["teacher"]:
            self.teacher = load_sam2_teacher(self.cfg["teacher"], self.cfg["teacher_config"])
            if model.config.distill_dim != self.teacher.hidden_dim:
                raise ConfigError(f"init {str(path)!r} has no distillation heads for the teacher "
                                  f"{str(self.cfg['teacher'])!r} (distill_dim {model.config.distill_dim}, the teacher's "
                                  f"width {self.teacher.hidden_dim}): continue it without `teacher`")
        return model, PixelSailProcessor.from_pretrained(path, model.config)

    def step_loss(self, model, proc, items: list, rng: np.random.Generator):
        r = random.Random(int(rng.integers(1 << 62)))
        inputs = [proc.build(x.frames[0], x.question, x.answer, x.prompts, rng=r) for x in items]
        out = model(inputs)
        ce, seg, dist_c, dist_f = [], [], [], []
        frames = torch.from_numpy(np.stack([x.frames[0] for x in items]))
        t_embed, t_fine = teacher_features(self.teacher, frames) if self.teacher is not None else (None, None)
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
                seg.append(point_sampled_mask_loss(logits, torch.from_numpy(x.masks[:, 0]), self.points)["mask"])
            if self.teacher is not None:
                gh, gw = inp.grid
                coarse = model.distill_coarse(vis).t().reshape(-1, gh, gw)
                dist_c.append(0.5 * distillation_loss(coarse, t_embed[b]))
                dist_f.append(0.5 * distillation_loss(model.distill_fine(dense[None])[0], t_fine[b]))
        loss_ce = torch.stack(ce).mean()
        loss_seg = torch.stack(seg).mean() if seg else loss_ce * 0
        loss_dist = (torch.stack(dist_c).mean() + torch.stack(dist_f).mean()) if dist_c else loss_ce * 0
        parts = {"ce": float(loss_ce.detach()), "mask": float(loss_seg.detach()), "distill": float(loss_dist.detach())}
        return loss_ce + loss_seg + loss_dist, parts


def run(config: str | Path | None = None, overrides: Sequence[str] = (), resume: bool = False,
        overwrite: bool = False) -> Path:
    cfg = family.load_config(config, DEFAULTS, overrides)
    recipe = PixelSailRecipe(cfg)
    return family.train(cfg, recipe.build, recipe.step_loss, cfg["tasks"], recipe.load, resume=resume,
                        overwrite=overwrite)


def main(argv: list[str] | None = None) -> None:
    recipe_cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
