"""Train a UniPixel tiny model's grounding head (`seg_ground`) on its own, from cached inputs.

    python -m pixelwise.recipes.ground_head cache --model M --split train --seed 21 --num 6000 --out A.pt
    python -m pixelwise.recipes.ground_head train --model M --cache A.pt B.pt --val V.pt --out DIR

`cache` runs the model as the evaluation does (`pipe.predict` on a generated PixelWorld row) and records, for each
sample's first `<|seg|>`, what the retrieval reads: the LLM state, every cell's key and object descriptor, the
retrieval logits, and the target's share of each cell (plus its mask on the prompted frame, for the click test).
`train` fits `object_keys.GroundingHead` on those records with the retrieval loss of the full recipe (cross-entropy
against the shares), scores on `--val` how often the click (the same local soft-argmax as the model) lands inside
the target, per expression kind, and writes `DIR/partial.safetensors` (the head's tensors under `seg_ground.`) and
`DIR/report.json`. A training config with `steps: 0` then grows the head onto the model
(`config_overrides: {seg_ground: L}` + `partial_checkpoints`). The rest of the model is frozen here, so an epoch
over 10,000 examples takes seconds instead of the hours the full recipe would spend on them.

`train --init HEAD` starts from a trained head (its cell positions resized when the model's `seg_grid` differs).
`cache --views` also keeps each cell's `cell_views` (a window of the frame's pixels and the proposal's mask, pixel
statistics, geometry) and `cell_labels` (the attributes of the object at the cell's centre); `train --eyes` then fits
a head with `seg_ground_eyes`, whose eyes are also taught to name those attributes (`--attributes`, the weight).
Every record keeps the question's tokens as the model reads them (`UniPixelModel.seg_words`, `CACHED_WORDS` of
them); `train --words N` fits a head with `seg_ground_words: N` that reads the last N.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

import pixelwise
from pixelwise.core.errors import ConfigError, PixelwiseError
from pixelwise.core.io import atomic_write, atomic_write_text
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.rows import BY_NAME, generate_row
from pixelwise.data.pixelworld.scene import Scene
from pixelwise.data.pixelworld.vocab import COLORS, SHAPES, SIZES, TEXTURES
from pixelwise.eval.benchmarks import get_benchmark
from pixelwise.models.unipixel.modeling_unipixel import local_soft_argmax
from pixelwise.models.unipixel.object_keys import GroundingHead, cell_views, proposal_geometry
from pixelwise.recipes import pixelworld_parts as parts

CACHED_WORDS = 64  # the question's last tokens kept per record (`UniPixelModel.seg_words`), for `train --words`
ATTRIBUTES = {"color": sorted(COLORS), "shape": list(SHAPES), "texture": list(TEXTURES), "size": list(SIZES)}


def cell_labels(scene: Scene, grid: tuple[int, int]) -> torch.Tensor:
    """The attributes (`ATTRIBUTES` indices, int8 [h*w, 4]; -1 on the background) of the object visible at each
    cell's centre on frame 0: what `seg_ground_eyes` is taught to see."""
    _, vis, _ = render(scene, [0])
    gh, gw = grid
    ys = ((torch.arange(gh) + 0.5) * vis.shape[-2] / gh).long()
    xs = ((torch.arange(gw) + 0.5) * vis.shape[-1] / gw).long()
    labels = torch.full((gh * gw, len(ATTRIBUTES)), -1, dtype=torch.int8)
    for o, ob in enumerate(scene.objects):
        under = torch.from_numpy(vis[o, 0])[ys][:, xs].flatten()
        labels[under] = torch.tensor([ATTRIBUTES[a].index(getattr(ob, a)) for a in ATTRIBUTES], dtype=torch.int8)
    return labels


class _Recorded(Exception):
    """Raised by the recording hook once the retrieval's inputs are kept, to skip the rest of the prediction."""


def cache(model: str | None, split: str, seed: int, num: int, out: Path, row_name: str = "image_referring",
          workdir: Path = Path("runs/ground-data"), views: bool = False) -> int:
    """-> the number of records written to `out` (samples whose answer had a `<|seg|>`). Each record also keeps the
    geometry of every cell's proposal (`proposal_geometry`). `views`: also each cell's `cell_views` and
    `cell_labels` (for heads with `seg_ground_eyes`)."""
    if row_name not in BY_NAME:
        raise ConfigError(f"--row {row_name!r}: not a PixelWorld row ({', '.join(sorted(BY_NAME))})")
    pipe = pixelwise.load(model)
    core = pipe.model
    if not core.config.seg_key_objects:
        raise ConfigError(f"{model or 'the default model'}: no object keys (seg_key_objects), nothing to ground on")
    row = BY_NAME[row_name]
    data = generate_row(workdir / f"{split}-{row_name}-s{seed}-n{num}", split, row, num, seed)
    bench = get_benchmark(row.bench.format(split=split))
    native = parts.native_samples(data.parent)
    seen: list[dict] = []
    proposals: list[tuple[torch.Tensor, torch.Tensor]] = []
    inner, describe, embed = core.seg_prompts, core.object_keys.forward, core.embed
    prompt: list[torch.Tensor] = []

    def keep_prompt(inputs, *args, **kwargs):
        prompt[:] = [inputs.input_ids.reshape(-1).cpu()]
        return embed(inputs, *args, **kwargs)

    def keep_proposals(mask_logits, object_scores, *args, **kwargs):
        proposals.append((mask_logits, object_scores))
        return describe(mask_logits, object_scores, *args, **kwargs)

    def recording(states, frame, visual=None, keys=None, later=(), objects=None, desc=None, words=None):
        if keys is None:
            keys, desc = core.retrieval_keys(frame, visual, objects, later)
        _, logits = inner(states, frame, visual, keys=keys, later=later, objects=objects, desc=desc, words=words)
        ids = prompt[0]  # the answer's `<|seg|>` answers the prompt's last turn
        seen.append({"states": states[0].float().cpu(), "keys": keys.float().cpu(), "desc": desc.float().cpu(),
                     "logits": logits[0].float().cpu(), "grid": core.retrieval_grid(frame), "pixels": frame.pixels,
                     "words": core.seg_words(ids, [len(ids)], CACHED_WORDS)[0]})
        raise _Recorded  # what follows (SAM2 decoding and tracking over the clip) is not needed

    core.seg_prompts = recording
    core.embed = keep_prompt
    core.object_keys.forward = keep_proposals
    records = []
    t0 = time.perf_counter()
    try:
        for i, s in enumerate(bench.read(data)):
            seen.clear()
            proposals.clear()
            try:
                with torch.no_grad():
                    pipe.predict(s)
            except _Recorded:
                pass
            if not seen:
                continue
            c = seen[0]
            gt = np.zeros(s.size, bool)
            for m in s.gt_instances():
                gt |= np.asarray(m[0] if m.ndim == 3 else m, bool)
            share = F.adaptive_avg_pool2d(torch.from_numpy(gt).float()[None, None], c["grid"]).flatten()
            ns = native[parts._native_index(str(s.key))]
            expr = ns.get("expression") or {}
            rec = {**{k: c[k] for k in ("states", "keys", "desc", "logits", "words")}, "share": share,
                   "kind": expr.get("kind") or ns["task"], "gt": torch.from_numpy(gt)}
            # the proposals of the retrieval's grid (the LLM's view may have made others first)
            masks, scores = next(p for p in proposals if p[0].shape[0] == c["keys"].shape[0])
            rec["geom"] = proposal_geometry(masks, scores).cpu()
            if views:
                crops, stats = cell_views(masks, scores, c["pixels"][0])
                rec.update(crops=crops.half().cpu(), stats=stats.float().cpu(),
                           labels=cell_labels(Scene.from_json(ns["scene"]), c["grid"]))
            records.append(rec)
            if i % 500 == 0:
                print(f"{i} samples, {len(records)} records, {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        core.seg_prompts = inner
        core.object_keys.__dict__.pop("forward", None)
        core.__dict__.pop("embed", None)
    with atomic_write(out) as f:
        torch.save(records, f)
    return len(records)


def _stack(records: list[dict]) -> dict:
    """Records -> batched tensors (records whose target is absent from the prompted frame are dropped)."""
    keep = [r for r in records if float(r["share"].sum()) > 0]
    if not keep:
        raise ConfigError("no cached record has its target on the prompted frame")
    names = ["states", "keys", "desc", "logits", "share", "gt"]
    if all("crops" in r for r in keep):
        names += ["crops", "stats", "labels"]
    if all("words" in r for r in keep):
        names += ["words"]
    if all("geom" in r for r in keep):
        names += ["geom"]
    return {**{k: torch.stack([r[k] for r in keep]) for k in names}, "kind": [r["kind"] for r in keep]}


def _per_attribute(logits: torch.Tensor, labels: torch.Tensor):
    """Per-cell attribute logits [.., N, sum of classes] and `cell_labels` [.., N, 4] -> (name, that attribute's
    logits [.., N, classes], its labels [.., N], -1 on the background) for each attribute."""
    at = 0
    for j, (name, classes) in enumerate(ATTRIBUTES.items()):
        yield name, logits[..., at:at + len(classes)], labels[..., j].long()
        at += len(classes)


def attribute_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Per-cell attribute logits and `cell_labels` -> accuracy per attribute on the cells that show an object."""
    return {name: round(float((part.argmax(-1)[y >= 0] == y[y >= 0]).float().mean()), 4)
            for name, part, y in _per_attribute(logits, labels)}


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the attributes of the cross-entropy of per-cell attribute logits against `cell_labels`."""
    return sum(F.cross_entropy(part.reshape(-1, part.shape[-1]), y.reshape(-1), ignore_index=-1)
               for _, part, y in _per_attribute(logits, labels)) / len(ATTRIBUTES)


def click_hits(logits, data: dict, image_size: int) -> dict:
    """Where the model would click (its local soft-argmax over the cells) -> the share of records whose click is
    inside the target, overall and per expression kind."""
    side = math.isqrt(logits.shape[-1])
    pts = local_soft_argmax(logits.float(), side, side, image_size)
    gt = data["gt"]
    size = gt.shape[-1]
    x = (pts[:, 0] * size / image_size).long().clamp(0, size - 1)
    y = (pts[:, 1] * size / image_size).long().clamp(0, size - 1)
    hit = gt[torch.arange(len(gt)), y, x].float().tolist()
    by = defaultdict(list)
    for kind, h in zip(data["kind"], hit):
        by[kind].append(h)
    return {"all": round(float(np.mean(hit)), 4), "n": len(hit),
            "kinds": {k: {"hit": round(float(np.mean(v)), 4), "n": len(v)} for k, v in sorted(by.items())}}


def last_words(words: torch.Tensor, n: int) -> torch.Tensor:
    """Cached words [B, L] (`seg_words`: a question's tokens from the left, -1 pads) -> the last `n` of each [B, n],
    as the model's `seg_words(..., length=n)` gives them."""
    count = (words >= 0).sum(-1, keepdim=True)
    at = (count - n).clamp(min=0) + torch.arange(n)
    picked = words.gather(-1, at.clamp(max=words.shape[-1] - 1))
    return torch.where(at < count, picked, torch.full_like(picked, -1))


def head_tensors(path: Path, cells: int) -> dict[str, torch.Tensor]:
    """A trained head's tensors (`partial.safetensors`, keys under `seg_ground.`), its learned cell positions resized
    (bilinearly, as a square grid) to `cells` when it was trained on another grid (`seg_grid`)."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such head (a `ground_head train` output's partial.safetensors)")
    sd = {k.removeprefix("seg_ground."): v for k, v in load_file(str(path)).items()}
    pos = sd.get("pos")
    if pos is None:
        raise ConfigError(f"{path}: not a grounding head (no seg_ground.pos)")
    if pos.shape[0] != cells:
        a, b = math.isqrt(pos.shape[0]), math.isqrt(cells)
        if a * a != pos.shape[0] or b * b != cells:
            raise ConfigError(f"{path}: {pos.shape[0]} cell positions cannot be resized to {cells} cells")
        grid = pos.T.reshape(1, -1, a, a)
        sd["pos"] = F.interpolate(grid, size=(b, b), mode="bilinear", align_corners=False)[0].reshape(-1, cells).T
    return sd


def train(model: str | None, caches: list[Path], val: Path, out: Path, layers: int = 3, width: int = 96,
          epochs: int = 10, lr: float = 1e-3, weight_decay: float = 0.05, batch: int = 64, seed: int = 0,
          init: Path | None = None, eyes: bool = False, attributes: float = 0.5, words: int = 0,
          geometry: bool = False, resume: bool = False, stop_after: int | None = None) -> dict:
    """-> the report (also written to `out/report.json`); the head's tensors in `out/partial.safetensors`. `init`:
    a trained head to start from (`head_tensors`: its positions are resized when the grids differ; a head without
    eyes gets them zero-initialised). `eyes`: a head with `seg_ground_eyes` (caches made with `views`), whose eyes
    are also taught, with weight `attributes`, to name the attributes of each cell's object (a classifier that is
    not saved). `words`: a head with `seg_ground_words` that reads the last `words` tokens of each question (caches
    that recorded them). `geometry`: a head with `seg_ground_geometry` (caches that recorded each cell's proposal
    geometry). Every epoch ends with a checkpoint (`out/state.pt`, atomic); `resume` continues from it exactly (a folder
    that holds one is refused without it); `stop_after`: stop after that many epochs of this call (checkpointed)."""
    state_path = Path(out) / "state.pt"
    if resume and not state_path.is_file():
        raise ConfigError(f"--resume: {state_path} does not exist (nothing to resume)")
    if state_path.is_file() and not resume:
        raise ConfigError(f"{out} holds a run's checkpoint ({state_path}): pass --resume to continue it, or another --out")
    for p in [*caches, val]:
        if not Path(p).is_file():
            raise ConfigError(f"{p}: no such cache (run `ground_head cache` first)")
    cfg = pixelwise.load(model).model.config
    torch.manual_seed(seed)
    tr = _stack([r for p in caches for r in torch.load(p)])
    va = _stack(torch.load(val))
    side = cfg.seg_grid or cfg.sam2_image_size // 16
    if tr["keys"].shape[1] != side * side:
        raise ConfigError(f"the caches have {tr['keys'].shape[1]} cells, the model's grid {side} x {side}")
    if eyes and not ("crops" in tr and "crops" in va):
        raise ConfigError("--eyes needs caches made with `cache --views` (train and val)")
    if words:
        if not ("words" in tr and "words" in va):
            raise ConfigError("--words needs caches that recorded the questions (made by this version of `cache`)")
        if words > tr["words"].shape[1]:
            raise ConfigError(f"--words {words}: the caches keep {tr['words'].shape[1]} tokens of each question")
        for d in (tr, va):
            d["words"] = last_words(d["words"], words)
    if geometry and not ("geom" in tr and "geom" in va):
        raise ConfigError("--geometry needs caches that recorded each cell's proposal geometry (this version of `cache`)")
    head = GroundingHead(tr["states"].shape[1], tr["keys"].shape[2], tr["desc"].shape[2], side * side, width, layers,
                         eyes=eyes, words=words, vocab=cfg.vocab_size, geometry=geometry)
    if init is not None:
        given = head_tensors(init, side * side)
        missing = {k for k in head.state_dict() if k not in given}
        if (any(not k.startswith(("eyes", "word", "text", "geometry")) for k in missing)
                or set(given) - set(head.state_dict())):
            raise ConfigError(f"--init {init}: not a head of {layers} layers, width {width}")
        try:
            head.load_state_dict(given, strict=False)
        except RuntimeError as e:
            raise ConfigError(f"--init {init}: not a head of {layers} layers, width {width}: {e}") from None
    name = nn.Linear(width, sum(len(v) for v in ATTRIBUTES.values())) if eyes else None
    params = list(head.parameters()) + (list(name.parameters()) if name is not None else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = len(tr["kind"])
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(steps, 1), pct_start=0.05)

    def loss_of(logits, share):
        target = share / share.sum(-1, keepdim=True)
        return -(target * torch.log_softmax(logits, -1)).sum(-1).mean()

    def run(d, idx):
        views = (d["crops"][idx].float(), d["stats"][idx]) if eyes else None
        logits, seen = head(d["states"][idx], d["keys"][idx], d["desc"][idx], d["logits"][idx], views=views,
                            with_eyes=True, words=d["words"][idx] if words else None,
                            geometry=d["geom"][idx] if geometry else None)
        return logits, (name(seen) if eyes else None)

    report = {"train_records": n, "val_records": len(va["kind"]), "layers": layers, "width": width,
              "grid": side, "init": None if init is None else str(init), "eyes": eyes, "words": words,
              "geometry": geometry,
              "attributes": attributes if eyes else None, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
              "val_before": click_hits(va["logits"], va, cfg.sam2_image_size), "curve": []}
    settings = {k: v for k, v in report.items() if k not in ("val_before", "curve")}  # what a resume must match
    start, spent = 0, 0.0
    if resume:
        state = torch.load(state_path, weights_only=False)
        if state["settings"] != settings:
            changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
            raise ConfigError(f"--resume: {state_path} was made with other settings ({', '.join(changed)})")
        head.load_state_dict(state["head"])
        if name is not None:
            name.load_state_dict(state["name"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        report["curve"] = state["curve"]
        start, spent = state["epoch"], state["curve"][-1]["seconds"] if state["curve"] else 0.0
    print(f"train {n} records, val {len(va['kind'])}; val clicks inside the target before: "
          f"{report['val_before']['all']}" + (f"; resumed after epoch {start}" if resume else ""), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter() - spent
    for ep in range(start, epochs):
        head.train()
        total = 0.0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + ep))
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            logits, named = run(tr, idx)
            loss = loss_of(logits, tr["share"][idx])
            if named is not None and attributes:
                loss = loss + attributes * attribute_loss(named, tr["labels"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        head.eval()
        with torch.no_grad():
            lv, named = run(va, slice(None))
        row = {"epoch": ep + 1, "train_loss": round(total / n, 4), "val_loss": round(float(loss_of(lv, va["share"])), 4),
               "val": click_hits(lv, va, cfg.sam2_image_size), "seconds": round(time.perf_counter() - t0, 1)}
        if named is not None:
            row["val_attributes"] = attribute_accuracy(named, va["labels"])
        report["curve"].append(row)
        print(f"epoch {ep + 1}: train loss {row['train_loss']}, val loss {row['val_loss']}, val clicks inside "
              f"{row['val']['all']} {({k: v['hit'] for k, v in row['val']['kinds'].items()})}"
              + (f", attributes {row['val_attributes']}" if named is not None else ""), flush=True)
        with atomic_write(state_path) as f:
            torch.save({"epoch": ep + 1, "head": head.state_dict(), "name": name.state_dict() if name else None,
                        "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": torch.get_rng_state(),
                        "curve": report["curve"], "settings": settings}, f)
        if stop_after is not None and ep + 1 - start >= stop_after and ep + 1 < epochs:
            print(f"stopped after epoch {ep + 1} of {epochs}; continue with the same command and --resume", flush=True)
            report["stopped"] = ep + 1
            return report
    report["val_after"] = report["curve"][-1]["val"] if report["curve"] else report["val_before"]
    save_file({f"seg_ground.{k}": v.detach().contiguous() for k, v in head.state_dict().items()},
              str(out / "partial.safetensors"))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except PixelwiseError as e:
        print(f"error: {e}")
        return 2


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="record what the retrieval reads on a generated PixelWorld row")
    c.add_argument("--model", default=None)
    c.add_argument("--split", default="train")
    c.add_argument("--seed", type=int, default=21)
    c.add_argument("--num", type=int, default=6000)
    c.add_argument("--row", default="image_referring")
    c.add_argument("--workdir", type=Path, default=Path("runs/ground-data"))
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--views", action="store_true", help="also each cell's views and labels (for --eyes heads)")
    t = sub.add_parser("train", help="fit the grounding head on cached records")
    t.add_argument("--model", default=None)
    t.add_argument("--cache", type=Path, nargs="+", required=True)
    t.add_argument("--val", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--layers", type=int, default=3)
    t.add_argument("--width", type=int, default=96)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", type=Path, default=None, help="a trained head to start from (its partial.safetensors)")
    t.add_argument("--eyes", action="store_true", help="a head that looks at each cell's proposal (seg_ground_eyes)")
    t.add_argument("--attributes", type=float, default=0.5, help="weight of the eyes' attribute-naming loss")
    t.add_argument("--words", type=int, default=0,
                   help="a head that reads the last N tokens of each question (seg_ground_words)")
    t.add_argument("--geometry", action="store_true",
                   help="a head that reads each cell's proposal geometry (seg_ground_geometry)")
    t.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out (state.pt)")
    t.add_argument("--stop-after", type=int, default=None, help="stop (checkpointed) after N epochs of this call")
    t.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cmd == "cache":
        k = cache(args.model, args.split, args.seed, args.num, args.out, args.row, args.workdir, args.views)
        print(f"{k} records -> {args.out}")
    else:
        if args.layers < 1 or args.width % 4:
            raise ConfigError(f"--layers {args.layers} / --width {args.width}: need >= 1 layer, a width divisible by 4")
        rep = train(args.model, args.cache, args.val, args.out, args.layers, args.width, args.epochs, args.lr,
                    args.weight_decay, seed=args.seed, init=args.init, eyes=args.eyes, attributes=args.attributes,
                    words=args.words, geometry=args.geometry, resume=args.resume, stop_after=args.stop_after)
        if "stopped" in rep:
            return 0
        print(f"val clicks inside the target: {rep['val_before']['all']} -> {rep['val_after']['all']}; "
              f"head -> {args.out / 'partial.safetensors'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
