"""Instrument: what the two sides of UniPixel-tiny's retrieval carry (session 13).

    python -m pixelwise.recipes.retrieval_probe [--model M] --train runs/data/pw-train-img --test DIR [DIR ...]

Query side: for attribute expressions, the `<|seg|>` state and its retrieval query after a teacher-forced restating
answer ("Sure, {phrase} <|seg|>."); a linear probe per attribute the phrase names (colour, shape, texture, size).
Key side: for every retrieval cell whose centre is on an object, the retrieval key and the object descriptor behind
it; a linear probe per attribute of that object. Probes are fit on the training folder and scored on the test
folders; each line gives the majority-class share beside the accuracy. A side that tells an attribute no better
than the majority cannot match on it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

import pixelwise
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.data.templates import Conversation, official_seg_question
from pixelwise.models.unipixel.object_keys import pixel_statistics
from pixelwise.train.unipixel_data import ExampleBuilder, PixelWorldSource, UniPixelTrainDataset

KINDS = ("color", "shape", "texture", "size")


def linear_probe(x_train: np.ndarray, y_train: list, x_test: np.ndarray, y_test: list, steps: int = 1000
                 ) -> dict[str, float]:
    """Standardised features -> softmax regression (Adam, light L2) -> test accuracy, and the test share of the
    training set's most frequent class (what a probe that reads nothing scores)."""
    classes = sorted(set(y_train))
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a = torch.tensor((x_train - mu) / sd, dtype=torch.float32)
    b = torch.tensor((x_test - mu) / sd, dtype=torch.float32)
    ya = torch.tensor([classes.index(y) for y in y_train])
    w = torch.zeros(a.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, bias], 0.01)
    for _ in range(steps):
        loss = F.cross_entropy(a @ w + bias, ya) + 1e-3 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        picks = (b @ w + bias).argmax(1).tolist()
    top = max(classes, key=list(y_train).count)
    return {"acc": float(np.mean([classes[p] == y for p, y in zip(picks, y_test)])),
            "majority": float(np.mean([y == top for y in y_test])), "n": len(y_test)}


def attr_expressions(root, builder: ExampleBuilder, limit: int):
    """The first `limit` attribute expressions of a referring folder, each as (its expression record, the example of
    a teacher-forced restating answer "Sure, {phrase} <|seg|>." built by `builder`)."""
    ds = PixelWorldDataset(root, tasks=["referring"])
    count = 0
    for i in range(len(ds)):
        if count >= limit:
            return
        record = ds.record(i)
        expression = record.get("expression") or {}
        if expression.get("kind") != "attr" or not record.get("phrase"):
            continue
        item, phrase = ds[i], record["phrase"]
        conv = Conversation("seg_image", [(official_seg_question(phrase, True), f"Sure, {phrase} <|seg|>.")],
                            seg_masks=item.masks)
        count += 1
        yield expression, builder(item.frames, conv, None, record["id"])


@torch.no_grad()
def query_features(model, processor, root, limit: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Attribute expressions of a referring folder -> ({"state", "query"} features [N, *], the attributes named)."""
    feats: dict[str, list] = {"state": [], "query": []}
    named = []
    for expression, ex in attr_expressions(root, ExampleBuilder(processor, video_frames=(1,)), limit):
        out = model(ex.inputs)
        state = out.prenorm_hidden[out.seg_positions[-1]]
        feats["state"].append(state.float().numpy())
        feats["query"].append(model.seg_query(state[None])[0].float().numpy())
        named.append({k: expression["filter"].get(k) for k in KINDS})
    return {k: np.stack(v) for k, v in feats.items()}, named


@torch.no_grad()
def name_matching(model, processor, root, limit: int, weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
                  ) -> dict[str, float]:
    """Models with `seg_key_words`: would matching by names find the target? For attribute expressions (teacher-forced
    restating answer, as `query_features`), the cell the retrieval picks (its highest logit) against the cell whose
    key names best what the phrase asks (the sum over the asked kinds of the log-probability its key -> word head
    gives the asked word, the phrase's own attributes standing in for what the query tells: 0.98 by the probes),
    the names among the retrieval's 8 best cells, and the two added (`names+w`: logits + w x names). -> share of
    expressions whose picked cell's centre lies on the target.""" 
    if not model.config.seg_key_words:
        raise ValueError("name matching reads the keys' word head: the model needs seg_key_words")
    builder = ExampleBuilder(processor, video_frames=(1,), visual_words=KINDS)
    names, word_ids = builder.word_ids
    words = F.normalize(model.language_model.embed_tokens.weight.float(), dim=-1)
    sam2 = model.require_sam2()
    found: dict[str, list[bool]] = {}
    for expression, ex in attr_expressions(root, builder, limit):
        out = model(ex.inputs)
        frames = sam2.encode_frames(ex.inputs.sam2_frames.to(model.dtype))
        visual = model.retrieval_visual(out.video_embeds, ex.inputs.video_grid_thw)
        keys, _ = model.retrieval_keys(frames[0], visual, out.objects)
        state = out.prenorm_hidden[out.seg_positions[-1]]
        logits = (model.seg_query(state[None]) @ keys.T / keys.shape[-1] ** 0.5)[0].float()
        named = F.normalize(model.seg_key_words(keys).float(), dim=-1)
        score = torch.zeros_like(logits)
        for k, kind in enumerate(KINDS):
            value = expression["filter"].get(kind)
            if value in names[k]:
                logp = torch.log_softmax(named @ words[word_ids[k]].T / 0.1, -1)
                score = score + logp[:, names[k].index(value)]
        h, w = frames[0].embed.shape[-2:]
        target = ex.seg_targets[0, 0]  # [S, S]
        rows = ((torch.arange(h) + 0.5) * target.shape[0] / h).long()
        cols = ((torch.arange(w) + 0.5) * target.shape[1] / w).long()
        on = target[rows][:, cols].flatten()  # the cell's centre on the target
        top = logits.topk(8).indices
        among = torch.full_like(score, -1e9)
        among[top] = score[top]  # the names decide among the retrieval's 8 best cells (keys off objects are unnamed)
        picks = {"retrieval": logits, "names": score, "names_top8": among,
                 **{f"names+{v:g}": logits + v * score for v in weights}}
        for name, sc in picks.items():
            found.setdefault(name, []).append(bool(on[int(sc.argmax())]))
    return {name: float(np.mean(v)) for name, v in found.items()} | {"n": len(found.get("retrieval", []))}


INPUTS = ("fine_mean", "fine_std", "pixel_stats")  # candidate descriptor inputs (`key_features(inputs=True)`)


def descriptor_inputs(mask_logits: torch.Tensor, high_res: torch.Tensor, frame: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
    """Proposal masks [N, S, S] (logits), SAM2's fine features [Dh, S', S'] and the SAM2 frame [3, F, F] -> per
    proposal what could be pooled inside it: the fine features' mean (the descriptor's texture input until session
    14) and standard deviation over the mask, and the frame's own pixel statistics (`pixel_statistics`, the input of
    `seg_key_pixels`)."""
    p = torch.sigmoid(mask_logits.float())
    fine = high_res.float()
    if fine.shape[-2:] != p.shape[-2:]:
        fine = F.interpolate(fine[None], size=p.shape[-2:], mode="bilinear", align_corners=False)[0]
    w = p / p.flatten(1).sum(1).clamp_min(1e-6)[:, None, None]
    mean = torch.einsum("nhw,dhw->nd", w, fine)
    std = (torch.einsum("nhw,dhw->nd", w, fine * fine) - mean ** 2).clamp_min(0).sqrt()
    return {"fine_mean": mean, "fine_std": std, "pixel_stats": pixel_statistics(p, frame)}


@torch.no_grad()
def key_features(model, processor, root, limit: int, inputs: bool = False
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scenes of a referring folder -> ({"key", "desc"} per cell on an object, [N, *]; labels [N, 4] in `KINDS`).
    With `inputs`, also candidate inputs of the descriptor pooled inside each cell's proposal (`descriptor_inputs`)."""
    data = UniPixelTrainDataset(PixelWorldSource(root, tasks=["referring"]), processor, seed=0, video_frames=(1,),
                                augment=False, visual_words=KINDS)
    sam2 = model.require_sam2()
    feats: dict[str, list] = {"key": [], "desc": []}
    if inputs:
        feats.update({name: [] for name in INPUTS})
    seen: list = []
    hook = model.object_keys.register_forward_pre_hook(lambda _, args: seen.append(args))
    labels = []
    try:
        for i in range(min(limit, len(data))):
            ex = data[i]
            if ex is None or ex.cell_words is None:
                continue
            seen.clear()
            out = model(ex.inputs)
            frames = sam2.encode_frames(ex.inputs.sam2_frames.to(model.dtype))
            visual = model.retrieval_visual(out.video_embeds, ex.inputs.video_grid_thw)
            if inputs:  # the proposals described afresh, so that the hook sees this frame's
                out.objects = None
            keys, desc = model.retrieval_keys(frames[0], visual, out.objects)
            on = ex.cell_words[:, 0] >= 0
            feats["key"].append(keys[on].float().numpy())
            feats["desc"].append(desc[on].float().numpy())
            if inputs:
                mask_logits, _, _, high_res = seen[-1][:4]
                pooled = descriptor_inputs(mask_logits, high_res, ex.inputs.sam2_frames[0])
                for name in INPUTS:
                    feats[name].append(pooled[name][on].float().numpy())
            labels.append(ex.cell_words[on].numpy())
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels)


def retrieval_probe(model, processor, train, tests, queries: int = 1500, scenes: int = 300,
                    inputs: bool = False) -> dict:
    result: dict = {"query": {}, "key": {}}
    if queries:
        q_train, n_train = query_features(model, processor, train, queries)
        parts = [query_features(model, processor, t, queries) for t in tests]
        q_test = {k: np.concatenate([p[0][k] for p in parts]) for k in q_train}
        n_test = [n for p in parts for n in p[1]]
        for kind in KINDS:
            tr = [i for i, n in enumerate(n_train) if n[kind]]
            te = [i for i, n in enumerate(n_test) if n[kind]]
            for space in ("state", "query"):
                result["query"][f"{kind}/{space}"] = linear_probe(
                    q_train[space][tr], [n_train[i][kind] for i in tr], q_test[space][te],
                    [n_test[i][kind] for i in te])
    k_train, y_train = key_features(model, processor, train, scenes, inputs)
    kparts = [key_features(model, processor, t, max(1, scenes // 3), inputs) for t in tests]
    k_test = {k: np.concatenate([p[0][k] for p in kparts]) for k in k_train}
    y_test = np.concatenate([p[1] for p in kparts])
    for j, kind in enumerate(KINDS):
        for space in k_train:
            result["key"][f"{kind}/{space}"] = linear_probe(
                k_train[space], [int(v) for v in y_train[:, j]], k_test[space], [int(v) for v in y_test[:, j]])
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped default model)")
    ap.add_argument("--train", required=True, help="a PixelWorld referring folder to fit the probes on")
    ap.add_argument("--test", nargs="+", required=True, help="PixelWorld referring folders to score them on")
    ap.add_argument("--queries", type=int, default=1500, help="attribute expressions per folder")
    ap.add_argument("--scenes", type=int, default=300, help="training scenes for the key probes (a third per test folder)")
    ap.add_argument("--matching", action="store_true",
                    help="only: would matching by the keys' names find attribute targets (`name_matching`)")
    ap.add_argument("--inputs", action="store_true",
                    help="also probe candidate descriptor inputs pooled inside each proposal (`descriptor_inputs`)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pipe = pixelwise.load(args.model) if args.model else pixelwise.load()
    if args.matching:
        result = {str(t): name_matching(pipe.model.eval(), pipe.processor, t, args.queries) for t in args.test}
        print(json.dumps(result, indent=2))
        return result
    result = retrieval_probe(pipe.model.eval(), pipe.processor, args.train, args.test, args.queries, args.scenes,
                             args.inputs)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
