"""Which part of a UniPixel model fails on PixelWorld: per-kind scores and the upper bounds of each part.

    python -m pixelwise.recipes.pixelworld_parts --model pixelwise/checkpoints/unipixel-tiny --split test --num 100

A headline score mixes three abilities; this separates them, on the same generated samples as `eval_pixelworld`:
* **per expression kind** (attr / relation / ordinal / motion / reasoning ...): the referring rows' scores broken down
  by the kind of expression PixelWorld generated (from the per-sample rows of an `eval_pixelworld` report);
* **mask side** (SAM2 alone, no language): the target prompted on the first frame by its ground-truth box or by a
  click at its interior point farthest from the boundary (the official evaluation click), tracked over the clip,
  the candidate chosen by SAM2's IoU head as at inference. Also the best of SAM2's 3 candidates (an oracle choice), so a
  broken IoU head shows as a gap. What the model could reach if the LLM pointed SAM2 at the right object perfectly;
* **language side** (the LLM alone): the model is asked for the target's box as text ("Give the bounding box of
  {phrase}.", the PixelWorld grounding task), and the box is compared with the truth (IoU, centre distance);
* **which object an image referring answer picks** (`object_choice`), per expression kind: the right one, none, or
  a wrong one sharing which of the target's attributes, and the mask's IoU when the object is right (the referring
  score is roughly the product of the two);
* **visual prompts through the public API**: a point (the same interior click) or the exact box on an object, given
  to `pipe.ask` as region `[0]`; the mask that comes back for the region is compared with the object's mask;
* **what the LLM knows of a region** (the ceiling of the region-QA rows): every visible object given as a mask
  region (`<|mem|>` memory) to `pipe.ask(image, "What is [0]?")`; the share of answers that name its colour, its
  shape, both. A model that ignores its memory names every region alike (the share of the most common answer);
* **does the LLM read its inputs** (`input_dependence`): the LM loss per answer token of "name every object with its
  box" (visual tokens) and "name every highlighted region" (`<|mem|>` memory) on the same scenes, with the inputs as
  they are, zeroed, and shuffled among themselves. A model that reads them loses much more than a few hundredths of
  a nat when they are taken away;
* **can the LLM name a region it is shown** (`memory_naming`): "name every highlighted region" with every object as
  a mask region ("[0] is a small red circle, [1] is ..."), teacher-forced; the share of colour and shape words the
  model predicts right (a scene's colours are few, so colour is above 1/9 even for a model that ignores the memory);
* **does the option letter follow the question** (`letter_choice`): option questions about image regions
  (`RegionChoiceSource`: colour, shape, same-colour count), teacher-forced; the share where the right letter is the
  most likely of A-D, per kind, and how often each letter wins. A model that answers one letter whatever it is asked
  (the region-QA rows at chance) shows one letter winning every time.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import pixelwise
from pixelwise.core.masks import box_iou, rle_decode
from pixelwise.core.media import load_media
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.rows import BY_NAME, generate_row
from pixelwise.data.pixelworld.scene import Scene
from pixelwise.data.pixelworld.tasks import BOX_GRID
from pixelwise.models.unipixel.processing_unipixel import sam2_transform
from pixelwise.train.unipixel_data import DenseGroundingSource, ExampleBuilder, RegionChoiceSource, word_classes
from pixelwise.train.unipixel_loss import lm_loss


def native_samples(root: Path) -> list[dict]:
    with open(root / "samples.jsonl") as f:
        return [json.loads(line) for line in f]


def _native_index(key: str) -> int:
    """Index of the native sample behind a benchmark row key (refcoco `image_id/ref_id` with image_id = index + 1;
    video layouts name the sample id; PixelQA questions are numbered in sample order)."""
    m = re.search(r"(?:train|val|test|holdout|long)-(\d+)", key)
    if m:
        return int(m.group(1))
    if "/" in key:
        return int(key.split("/")[0]) - 1
    return int(key)


def kind_breakdown(report: dict, samples: list[dict]) -> dict[str, dict[str, float]]:
    """Per expression kind: cIoU (rows with I/U) or mean J&F (video rows), with the sample count."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in report.get("per_sample", []):
        s = samples[_native_index(str(row["key"]))]
        kind = (s.get("expression") or {}).get("kind") or s.get("qtype") or s["task"]
        a = acc[kind]
        a["n"] += 1
        if "I" in row:
            a["I"] += row["I"]
            a["U"] += row["U"]
        elif "J" in row and "F" in row:  # video rows: per-expression J and F (fractions)
            a["J&F"] += (row["J"] + row["F"]) / 2
        elif "correct" in row:
            a["acc"] += float(bool(row["correct"]))
    out = {}
    for kind, a in sorted(acc.items()):
        n = int(a["n"])
        if "U" in a:
            out[kind] = {"cIoU": a["I"] / max(a["U"], 1.0), "n": n}
        elif "J&F" in a:
            out[kind] = {"J&F": a["J&F"] / n, "n": n}
        else:
            out[kind] = {"acc": a["acc"] / n, "n": n}
    return out


def interior_click(mask: np.ndarray) -> tuple[float, float]:
    """The pixel farthest from the mask's boundary (the official PixelQA evaluation click)."""
    import cv2

    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return float(x), float(y)


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _target(s: dict) -> np.ndarray:
    """bool [T, H, W] of the sample's first target (frames where the mask is missing are empty)."""
    t = s["targets"][0]
    return np.stack([rle_decode(m) if m else np.zeros((s["height"], s["width"]), bool) for m in t["masks"]])


def _frames(root: Path, s: dict) -> np.ndarray:
    return load_media(root / s["media"]).frames[:]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


@torch.no_grad()
def sam2_upper_bound(model, root: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    """SAM2 of `model` prompted by the target's true box / interior click on frame 0 (no language). The oracle best
    of 3 is over SAM2's own candidates upsampled bilinearly; a model with a `mask_refiner` refines the kept one, which
    can then exceed it."""

    sam2 = model.require_sam2()
    size = sam2.image_size
    res: dict[str, dict[str, list[float]]] = {"box": defaultdict(list), "click": defaultdict(list)}
    for s in native_samples(root)[:limit]:
        frames, gt = _frames(root, s), _target(s)
        if not gt[0].any():
            continue
        h, w = gt.shape[-2:]
        feats = sam2.encode_frames(sam2_transform(frames, size).to(model.device))
        sx, sy = size / w, size / h
        x0, y0, x1, y1 = tight_box(gt[0])
        cx, cy = interior_click(gt[0])
        prompts = {"box": (torch.tensor([[[x0 * sx, y0 * sy], [x1 * sx, y1 * sy]]]), torch.tensor([[2, 3]])),
                   "click": (torch.tensor([[[cx * sx, cy * sy], [0.0, 0.0]]]), torch.tensor([[1, -1]]))}
        for kind, (coords, labels) in prompts.items():
            tokens = sam2.sam_prompt_encoder.embed_points(coords.to(model.device), labels.to(model.device), pad=False)
            out = sam2.track(feats, tokens, frame_size=(h, w))
            pred = out.masks[0].cpu().numpy()
            r = res[kind]
            inter = np.logical_and(pred, gt).sum()
            union = np.logical_or(pred, gt).sum()
            r["I"].append(float(inter))
            r["U"].append(float(union))
            r["iou0"].append(_iou(pred[0], gt[0]))
            cands = F.interpolate(out.decoder_multimask_logits[0, :1].float(), size=(h, w), mode="bilinear") > 0
            r["best0"].append(max(_iou(c.cpu().numpy(), gt[0]) for c in cands[0]))
    return {kind: {"cIoU": sum(r["I"]) / max(sum(r["U"]), 1.0), "frame0_iou": float(np.mean(r["iou0"])),
                   "frame0_best_of_3": float(np.mean(r["best0"])),
                   "frame0_frac_iou_0.8": float(np.mean(np.array(r["iou0"]) >= 0.8)), "n": len(r["iou0"])}
            for kind, r in res.items() if r["iou0"]}


def mask_resolution_bound(model, root: Path, limit: int | None = None) -> dict[str, float]:
    """What SAM2's decoder could give at best before any learned upsampling: each target's first-frame mask seen at
    the decoder's output size (a quarter of SAM2's input; its share of each output pixel, a perfect prediction) and
    upsampled bilinearly to the frame, as SAM2 does -> mean IoU against the target and the share at IoU >= 0.8. A
    `mask_refiner` (tiny models) is what can go past it."""
    low = model.require_sam2().image_size // 4
    ious = []
    for s in native_samples(root)[:limit]:
        gt = _target(s)[0]
        if not gt.any():
            continue
        t = torch.from_numpy(gt).float()[None, None]
        cover = F.adaptive_avg_pool2d(t, (low, low))
        up = F.interpolate(cover, size=gt.shape, mode="bilinear", align_corners=False)[0, 0] > 0.5
        ious.append(_iou(up.numpy(), gt))
    return {"mean_iou": float(np.mean(ious)), "frac_iou_0.8": float(np.mean(np.array(ious) >= 0.8)), "n": len(ious),
            "decoder_size": low}


BOX_RE = re.compile(r"<box>\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)")


def llm_grounding(pipe, root: Path, limit: int | None = None) -> dict[str, float]:
    """The LLM's box for the target as text vs the truth (images; PixelWorld writes boxes on a `BOX_GRID` grid)."""
    ious, dists, parsed = [], [], 0
    samples = [s for s in native_samples(root)[:limit] if s.get("phrase")]
    for s in samples:
        frames, gt = _frames(root, s), _target(s)
        r = pipe.ask(frames[:1], f"Give the bounding box of {s['phrase']}.")
        m = BOX_RE.search(r.answer)
        truth = tight_box(gt[0])
        if not m:
            ious.append(0.0)
            continue
        parsed += 1
        h, w = gt.shape[-2:]
        b = [float(v) * (w if k % 2 == 0 else h) / BOX_GRID for k, v in enumerate(m.groups())]
        ious.append(box_iou(b, truth))
        dists.append(float(np.hypot((b[0] + b[2] - truth[0] - truth[2]) / 2, (b[1] + b[3] - truth[1] - truth[3]) / 2)))
    n = len(samples)
    return {"box_iou": float(np.mean(ious)) if ious else 0.0, "frac_iou_0.5": float(np.mean(np.array(ious) >= 0.5)),
            "centre_error_px": float(np.mean(dists)) if dists else float("nan"), "parsed": parsed / max(n, 1), "n": n}


def visual_prompts(pipe, root: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    """Every visible object of each scene's first frame, prompted by a point or a box through `pipe.ask`."""

    res: dict[str, list[float]] = {"point": [], "box": []}
    for s in native_samples(root)[:limit]:
        scene = Scene.from_json(s["scene"])
        rgb, vis, _ = render(scene, [0])
        for o in range(vis.shape[0]):
            m = vis[o, 0]
            if m.sum() < 12:
                continue
            cx, cy = interior_click(m)
            x0, y0, x1, y1 = tight_box(m)
            for kind, region in (("point", Point(cx, cy, 0)), ("box", Box(x0, y0, x1, y1, 0))):
                r = pipe.ask(rgb[:1], "What is [0]?", regions=[region], max_new_tokens=8)
                res[kind].append(_iou(np.asarray(r.objects[0].masks[0]), m))
    return {k: {"mean_iou": float(np.mean(v)), "frac_iou_0.8": float(np.mean(np.array(v) >= 0.8)), "n": len(v)}
            for k, v in res.items() if v}


def region_naming(pipe, root: Path, limit: int | None = None) -> dict[str, float]:
    """Every visible object of each scene's first frame given as a mask region: does the answer name it?"""
    hits: dict[str, list[bool]] = {"colour": [], "shape": [], "both": []}
    answers: dict[str, int] = defaultdict(int)
    for s in native_samples(root)[:limit]:
        scene = Scene.from_json(s["scene"])
        rgb, vis, _ = render(scene, [0])
        for o, obj in enumerate(scene.objects):
            m = vis[o, 0]
            if m.sum() < 12:
                continue
            r = pipe.ask(rgb[:1], "What is [0]?", regions=[MaskPrompt(m, 0)], max_new_tokens=16)
            words = set(re.findall(r"[a-z]+", r.answer.lower()))
            colour, shape = obj.color_at(0) in words, obj.shape in words
            hits["colour"].append(colour)
            hits["shape"].append(shape)
            hits["both"].append(colour and shape)
            answers[r.answer.strip()] += 1
    n = len(hits["both"])
    out = {k: float(np.mean(v)) if v else 0.0 for k, v in hits.items()}
    return {**out, "most_common_answer_share": max(answers.values()) / n if n else 0.0, "n": n}


@torch.no_grad()
def object_choice(pipe, root: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    """Which object an image referring answer's mask lands on, per expression kind: the share of samples whose mask
    overlaps the target most (`right`), the mask's IoU when it does (`iou_if_right`: the mask side), none at all
    (`none`: IoU < 0.3 with every object), and for a wrong object which of the target's attributes it shares
    (`wrong_same_*`: what the query carried). cIoU is roughly right x iou_if_right."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in native_samples(root)[:limit]:
        scene = Scene.from_json(s["scene"])
        rgb, vis, _ = render(scene, [0])
        target = int(s["targets"][0]["obj_id"])
        r = pipe.segment(rgb[:1], s["phrase"], max_new_tokens=32)
        pred = np.zeros(vis.shape[-2:], bool)
        for o in r.objects:
            pred |= np.asarray(o.masks[0])
        ious = [_iou(pred, vis[o, 0]) if vis[o, 0].any() else 0.0 for o in range(vis.shape[0])]
        best = int(np.argmax(ious))
        a = acc[(s.get("expression") or {}).get("kind") or "other"]
        right, none = best == target and ious[best] >= 0.3, ious[best] < 0.3
        a["right"].append(right)
        a["none"].append(none)
        if right:
            a["iou_if_right"].append(ious[best])
        elif not none:
            got, want = scene.objects[best], scene.objects[target]
            for attr in ("color", "shape", "texture", "size"):
                a[f"wrong_same_{attr}"].append(getattr(got, attr) == getattr(want, attr))
    return {kind: {k: float(np.mean(v)) for k, v in a.items()} | {"n": len(a["right"])}
            for kind, a in sorted(acc.items())}


def _examples(source, processor, limit: int):
    """The first conversation of each of the first `limit` scenes of a training source (image, seed 0) -> (the
    conversation, its teacher-forced example)."""
    builder = ExampleBuilder(processor, video_frames=(1,))
    rng = random.Random(0)
    for i in range(min(limit, len(source))):
        frames, convs, key = source.conversations(i, rng)
        if convs:
            yield convs[0], builder(frames, convs[0], None, key)


def input_dependence(model, processor, root: Path, limit: int = 25) -> dict[str, dict[str, float]]:
    """LM loss per answer token with the visual tokens / the memory as they are, zeroed, shuffled."""
    mode = {"what": "as is"}

    def alter(_module, _inputs, out):
        if mode["what"] == "zeroed":
            return torch.zeros_like(out)
        if mode["what"] == "shuffled":
            return out[torch.randperm(out.shape[0], generator=torch.Generator().manual_seed(0))]
        return out

    result = {}
    for name, module, mem_rate in (("visual", model.visual.merger, 0.0), ("memory", model.msk_proj, 1.0)):
        source = DenseGroundingSource(root, seg_rate=0.0, mem_rate=mem_rate)
        examples = [ex for _, ex in _examples(source, processor, limit)]
        handle = module.register_forward_hook(alter)
        losses: dict[str, list[float]] = {}
        try:
            for what in ("as is", "zeroed", "shuffled"):
                mode["what"] = what
                for ex in examples:
                    with torch.no_grad():
                        out = model(ex.inputs)
                    ids = ex.inputs.input_ids.reshape(-1)
                    losses.setdefault(what, []).append(float(lm_loss(out.logits, ids, ex.labels_mask)))
        finally:
            handle.remove()
        result[name] = {k: float(np.mean(v)) for k, v in losses.items()} | {"n": len(examples)}
    return result


@torch.no_grad()
def memory_naming(model, processor, root: Path, limit: int = 30) -> dict:
    """Teacher-forced region lists ("[0] is a small red circle, ..."; every visible object of a scene's first frame as
    a `<|mem|>` region, ids in random order): the share of colour and shape words predicted right."""
    _, ids = word_classes(processor)
    kinds = {int(i): "colour" for i in ids[0]} | {int(i): "shape" for i in ids[1]}
    hits: dict[str, list[float]] = defaultdict(list)
    for _, ex in _examples(DenseGroundingSource(root, seg_rate=0.0, mem_rate=1.0), processor, limit):
        seq = ex.inputs.input_ids.reshape(-1)
        best = model(ex.inputs).logits.argmax(-1)
        for q in ex.labels_mask.reshape(-1).nonzero().flatten().tolist():
            kind = kinds.get(int(seq[q]))
            if kind and q > 0:
                hits[kind].append(float(best[q - 1] == seq[q]))
    return {k: {"acc": float(np.mean(v)), "n": len(v)} for k, v in sorted(hits.items())}


@torch.no_grad()
def letter_choice(model, processor, root: Path, limit: int = 40, hint_rate: float = 0.0) -> dict:
    """Teacher-forced option questions about image regions: per kind, the share where the right letter has the
    highest logit among A-D at the answer's letter position (with `option_pointer`: the letter the pointer picks), and
    how often each letter wins. With `hint_rate` 1 every question states its answer first ("[2] is red. What color
    is [2]?"): what is left is picking the option."""
    tok = processor.tokenizer
    letters = {tok.token_to_id(c): c for c in "ABCD"}
    ids_t = torch.tensor(list(letters))
    hits: dict[str, list[float]] = defaultdict(list)
    wins: dict[str, int] = defaultdict(int)
    for conv, ex in _examples(RegionChoiceSource(root, turns=4, hint_rate=hint_rate), processor, limit):
        out = model(ex.inputs)
        ids = ex.inputs.input_ids.reshape(-1)
        where = [p for p in range(len(ids) - 1) if int(ids[p + 1]) in letters and ex.labels_mask[p + 1]]
        pointer = {}  # a model with `option_pointer` writes the letter its pointer picks
        if model.config.option_pointer:
            for positions, option_ids, end in model.option_turns(ids.tolist()).values():
                for p in (p for p in where if positions[-1] < p < end):
                    pointer[p] = option_ids[int(model.option_scores(out.prenorm_hidden[p],
                                                                    out.prenorm_hidden[positions]).argmax())]
        for (question, _), p in zip(conv.turns, where):  # one letter per answer, in turn order
            kind = "color" if "What color" in question else "shape" if "What shape" in question else "count"
            best = pointer.get(p, int(ids_t[out.logits[p, ids_t].argmax()]))
            hits[kind].append(float(best == int(ids[p + 1])))
            wins[letters[best]] += 1
    return {k: {"acc": float(np.mean(v)), "n": len(v)} for k, v in sorted(hits.items())} | {"wins": dict(wins)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped default model)")
    ap.add_argument("--out", default="runs/eval-pixelworld", help="the eval_pixelworld output folder (data, reports)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=50, help="samples per upper-bound measurement")
    ap.add_argument("--scenes", type=int, default=10, help="scenes for the visual-prompt check (every object)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    pipe = pixelwise.load(args.model) if args.model else pixelwise.load()
    result: dict = {"model": args.model or "default", "split": args.split, "kinds": {}}
    for name in ("image_referring", "video_referring", "motion_referring"):
        root = out / "data" / f"{args.split}-{name}"
        generate_row(root, args.split, BY_NAME[name], args.num, args.seed)
        rep = out / args.split / f"{name}.json"
        if rep.is_file():
            result["kinds"][name] = kind_breakdown(json.loads(rep.read_text()), native_samples(root))
    img = out / "data" / f"{args.split}-image_referring"
    vid = out / "data" / f"{args.split}-video_referring"
    result["sam2_given_truth"] = {"image": sam2_upper_bound(pipe.model, img, args.limit),
                                  "video": sam2_upper_bound(pipe.model, vid, args.limit // 2)}
    result["mask_resolution_bound"] = mask_resolution_bound(pipe.model, img)
    result["llm_box_text"] = llm_grounding(pipe, img, args.limit)
    result["object_choice"] = object_choice(pipe, img, args.limit)
    result["visual_prompts_api"] = visual_prompts(pipe, img, args.scenes)
    result["region_naming"] = region_naming(pipe, img, args.scenes)
    result["input_dependence"] = input_dependence(pipe.model, pipe.processor, img)
    result["memory_naming"] = memory_naming(pipe.model, pipe.processor, img)
    result["letter_choice"] = letter_choice(pipe.model, pipe.processor, img)
    path = out / f"parts-{args.split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
