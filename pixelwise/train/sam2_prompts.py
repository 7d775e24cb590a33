"""Stage 0 of a from-scratch model: SAM2 learns *objects* before it learns language.

UniPixel starts from a pre-trained SAM 2.1, whose decoder already turns a prompt into an object's mask; a tiny SAM2
trained from random initialisation has no such prior, and learning objectness and grounding at once through the
single `<|seg|>` state plateaus (soft Dice ~0.2-0.35 on PixelWorld). This stage trains SAM2 alone, the way SAM2 is
trained: an object of a PixelWorld scene is prompted on one frame by clicks or a (jittered) box, and the model
predicts its mask there and, on clips, tracks it through the following frames with its memory. The prompt tokens go
through `Sam2Model.track_frames` as hidden prompt tokens (the positional point/box embeddings of SAM2's prompt
encoder), so the decoder, memory and losses are exactly those of the joint stage.

Scenes are read from native PixelWorld folders (every sample carries its full scene graph) and re-rendered, which
gives the masks of *every* object, not only a sample's targets. Items are a pure function of (seed, epoch, index),
so `--resume` sees the same data as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene
from pixelwise.models.unipixel.processing_unipixel import sam2_transform
from pixelwise.modules.losses import Sam2LossWeights
from pixelwise.modules.sam2.features import Sam2FrameFeatures
from pixelwise.train.unipixel_loss import tracked_mask_losses


@dataclass
class PromptedClip:
    """Prompted objects of one scene: frames (SAM2-normalised [K, 3, S, S]), each object's masks [O, K, S, S] and
    its prompt on frame 0. Several objects of the same frames, each with its own prompt and answer, are what makes
    the decoder use the prompt rather than a salient-object prior (SAM's training prompts many objects per image)."""

    frames: torch.Tensor
    targets: torch.Tensor  # bool [O, K, S, S]
    coords: torch.Tensor  # [O, 2, 2] (x, y) in S x S pixels: two clicks, or a box's two corners
    labels: torch.Tensor  # [O, 2] int: 1 positive click, 0 negative click, -1 no point; 2/3 box corners
    data_type: str = "sam2_prompts"


class PromptedObjectDataset:
    """Objects of PixelWorld scenes with random click / box prompts (SAM2-style interactive training data).

    Args:
        roots: native PixelWorld folders (their `samples.jsonl` scenes are re-rendered).
        image_size: SAM2 input size S.
        clip_frames: frames per item on video scenes (1: single frames only); image scenes give 1 frame.
        objects: prompted objects per item (fewer when the scene has fewer visible objects).
        seed: data seed.
    """

    def __init__(self, roots: list[str | Path], image_size: int, clip_frames: int = 3, objects: int = 4,
                 seed: int = 0):
        self.scenes: list[dict] = []
        for root in roots:
            with open(Path(root) / "samples.jsonl") as f:
                seen: set[str] = set()
                for line in f:
                    scene = json.loads(line)["scene"]
                    key = json.dumps(scene, sort_keys=True)
                    if key not in seen:  # several tasks share one scene
                        seen.add(key)
                        self.scenes.append(scene)
        if not self.scenes:
            raise ValueError(f"no PixelWorld scenes under {[str(r) for r in roots]}")
        self.image_size = image_size
        self.clip_frames = clip_frames
        self.objects = objects
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.scenes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def group_keys(self) -> list[str]:
        """Image scenes and clips in separate micro-batches (items of one batch must have the same frame count)."""
        return ["clip" if s["num_frames"] > 1 and self.clip_frames > 1 else "image" for s in self.scenes]

    def __getitem__(self, index: int) -> PromptedClip | None:
        rng = random.Random(hash((self.seed, self.epoch, int(index), 2)) & 0xFFFFFFFF)  # ints only: str hashes vary per process
        scene = Scene.from_json(self.scenes[int(index)])
        n_t = scene.num_frames
        k = min(self.clip_frames, n_t) if n_t > 1 else 1
        stride = rng.randint(1, max(1, min(4, (n_t - 1) // max(1, k - 1)))) if k > 1 else 1
        start = rng.randrange(0, n_t - (k - 1) * stride)
        frame_ids = [start + i * stride for i in range(k)]
        rgb, vis, _ = render(scene, frame_ids)
        visible = [i for i in range(vis.shape[0]) if vis[i, 0].sum() >= 12]
        if not visible:
            return None
        objs = rng.sample(visible, min(self.objects, len(visible)))
        s = self.image_size
        frames = sam2_transform(rgb, s)
        m = torch.from_numpy(vis[objs]).float()  # [O, K, H, W]
        targets = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True) > 0.5
        prompts = [_random_prompt(vis[o, 0], rng, s) for o in objs]
        return PromptedClip(frames, targets, torch.stack([c for c, _ in prompts]), torch.stack([lb for _, lb in prompts]))


def _random_prompt(mask: np.ndarray, rng: random.Random, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A click inside the object (+ sometimes a second positive or a negative one outside), or a jittered box."""
    h, w = mask.shape
    sx, sy = size / w, size / h
    ys, xs = np.nonzero(mask)
    kind = rng.random()
    if kind < 0.5:  # box, each side jittered by up to 10 % of the box size
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        jx, jy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        box = [x0 + rng.uniform(-jx, jx), y0 + rng.uniform(-jy, jy), x1 + rng.uniform(-jx, jx), y1 + rng.uniform(-jy, jy)]
        coords = torch.tensor([[box[0] * sx, box[1] * sy], [box[2] * sx, box[3] * sy]], dtype=torch.float32)
        return coords, torch.tensor([2, 3])
    i = rng.randrange(len(xs))
    first = [xs[i] * sx, ys[i] * sy]
    if kind < 0.75:
        return torch.tensor([first, [0.0, 0.0]], dtype=torch.float32), torch.tensor([1, -1])
    if kind < 0.9:
        j = rng.randrange(len(xs))
        return torch.tensor([first, [xs[j] * sx, ys[j] * sy]], dtype=torch.float32), torch.tensor([1, 1])
    bys, bxs = np.nonzero(~mask)
    j = rng.randrange(len(bxs))
    return torch.tensor([first, [bxs[j] * sx, bys[j] * sy]], dtype=torch.float32), torch.tensor([1, 0])


def collate_prompted(batch: list[PromptedClip | None]) -> list[PromptedClip]:
    return [b for b in batch if b is not None]


class Sam2PromptModule(torch.nn.Module):
    """SAM2 of a UniPixel model trained on prompted objects; same call signature as `UniPixelTrainModule`.

    `forward(items)` -> (mean loss, float metrics incl. `_counts`, extras). Items of one call share their frame count
    (the dataset's group keys); their frames are encoded as one batch and tracked as one batch of objects.
    """

    def __init__(self, model: torch.nn.Module, weights: Sam2LossWeights | None = None):
        super().__init__()
        self.model = model
        self.weights = weights or Sam2LossWeights()

    def forward(self, items: list[PromptedClip], keep_masks: bool = False):
        sam2 = self.model.require_sam2() if hasattr(self.model, "require_sam2") else self.model.sam2
        if not items:
            zero = sum(p.sum() * 0.0 for p in sam2.parameters() if p.requires_grad)
            return zero, {"_counts": {}}, []
        k = items[0].frames.shape[0]
        dev = next(sam2.parameters()).device
        frames = torch.cat([it.frames for it in items]).to(dev)  # [N*K, 3, S, S], item-major
        feats = sam2.encode_frames(frames)  # each item's frames once, shared by its objects
        owner = torch.cat([torch.full((it.targets.shape[0],), i) for i, it in enumerate(items)]).to(dev)
        n = owner.numel()  # objects in the micro-batch

        def frame_of_each_object(t: int) -> Sam2FrameFeatures:
            rows = owner * k + t
            return Sam2FrameFeatures(feats.embed[rows], feats.high_res_s0[rows], feats.high_res_s1[rows], feats.pos,
                                     None if feats.pixels is None else feats.pixels[rows])

        coords = torch.cat([it.coords for it in items]).to(dev)
        labels = torch.cat([it.labels for it in items]).to(dev)
        # clicks (labels 1/0, -1 = none) and box corners (labels 2/3) are SAM2's positional point embeddings
        tokens = sam2.sam_prompt_encoder.embed_points(coords, labels, pad=False)
        targets = torch.cat([it.targets for it in items]).to(dev)  # [N_obj, K, S, S]
        sums, _ = tracked_mask_losses(sam2, frame_of_each_object, tokens, targets, self.weights)
        loss = sum(sums.values()) / (n * k)
        metrics = {"loss": float(loss.detach()), "loss_seg": float(loss.detach())}
        metrics.update({f"seg_{key}": float(v.detach()) / (n * k) for key, v in sums.items()})
        metrics["_counts"] = {key: n for key in metrics}  # per-object means
        return loss, metrics, [{} for _ in items]
