"""Independent checks of a generated sample against its own scene graph.

The tests' oracle for generated data: re-renders the stored scene, re-resolves the stored
expression, and compares everything the sample claims — targets, masks, boxes, box text, options — with what the
scene implies. An empty list means the sample is consistent.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from pixelwise.core.masks import mask_to_box, rle_decode
from pixelwise.data.pixelworld import grammar, splits, tasks
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene


def _masks_match(scene: Scene, vis: np.ndarray, targets: list[dict[str, Any]], where: str) -> list[str]:
    errs = []
    index = {o.id: i for i, o in enumerate(scene.objects)}
    H, W = scene.height, scene.width
    for tgt in targets:
        oid = tgt["obj_id"]
        if oid not in index:
            errs.append(f"{where}: target {oid} is not in the scene")
            continue
        ref = vis[index[oid]]
        if len(tgt["masks"]) != scene.num_frames:
            errs.append(f"{where}: target {oid} has {len(tgt['masks'])} masks for {scene.num_frames} frames")
            continue
        for t, rle in enumerate(tgt["masks"]):
            m = np.zeros((H, W), bool) if rle is None else rle_decode(rle, (H, W))
            if not np.array_equal(m, ref[t]):
                errs.append(f"{where}: target {oid} frame {t}: mask differs from the re-rendered scene")
                break
            box = mask_to_box(m)
            if (list(box) if box else None) != tgt["boxes"][t]:
                errs.append(f"{where}: target {oid} frame {t}: box {tgt['boxes'][t]} != {box}")
                break
    return errs


def check_sample(sample: dict[str, Any]) -> list[str]:
    sid = sample["id"]
    scene = Scene.from_json(sample["scene"])
    _, vis, _ = render(scene)
    errs = _masks_match(scene, vis, sample["targets"], sid)
    targets = [t["obj_id"] for t in sample["targets"]]
    task = sample["task"]
    expr = sample.get("expression")
    if expr is not None:
        r = grammar.resolve(expr, scene)
        if r.ambiguous:
            errs.append(f"{sid}: expression is ambiguous under the scene")
        if r.targets != sorted(targets):
            errs.append(f"{sid}: expression resolves to {r.targets}, sample says {sorted(targets)}")
    elif task in ("referring", "motion_referring", "reasoning", "multi_target", "grounding", "detection"):
        errs.append(f"{sid}: {task} sample without an expression")
    if task in ("referring", "motion_referring", "reasoning", "grounding", "region", "pixelqa") and len(targets) != 1:
        errs.append(f"{sid}: {task} must have exactly one target")
    n_seg = sample["answer"].count(tasks.SEG)
    if task in ("referring", "motion_referring", "reasoning", "multi_target", "pixelqa") and n_seg != len(targets):
        errs.append(f"{sid}: answer has {n_seg} {tasks.SEG} for {len(targets)} targets")
    if task in ("grounding", "detection"):
        boxes = re.findall(r"<box>(\d+),(\d+),(\d+),(\d+)</box>", sample["answer"])
        want = [tasks.box_text(tuple(t["boxes"][0]), scene.width, scene.height) for t in sample["targets"]]
        got = ["<box>{},{},{},{}</box>".format(*b) for b in boxes]
        if got != want:
            errs.append(f"{sid}: box text {got} != {want}")
    if sample.get("options"):
        letter = sample["correct"]
        opts = sample["options"]
        if letter not in "ABCD"[: len(opts)] or len(set(opts)) != len(opts):
            errs.append(f"{sid}: bad options/correct letter")
        else:
            correct = opts["ABCD".index(letter)].split(") ", 1)[1]
            o = scene.obj(targets[0])
            facts = grammar.motion_facts(scene)[o.id]
            qt = sample["qtype"]
            ok = {
                "color": correct == (o.color_change[1] if o.color_change else o.color),
                "shape": correct == o.shape,
                "direction": facts.get(f"moves_{correct}") is True,
                "event": any(facts.get(k) is True and v == correct for k, v in tasks.EVENT_WORDS.items()),
                "count": correct == tasks.COUNT_WORDS[sum(1 for x in scene.objects
                                                          if x.id != o.id and x.color == o.color)]
                if all(x.color_change is None for x in scene.objects) else False,
            }.get(qt, False)
            if not ok:
                errs.append(f"{sid}: correct option {correct!r} does not hold for object {o.id} ({qt})")
            if qt == "event":
                for opt in opts:
                    text = opt.split(") ", 1)[1]
                    if text != correct and any(facts.get(k) is not False for k, v in tasks.EVENT_WORDS.items()
                                               if v == text):
                        errs.append(f"{sid}: distractor {text!r} is not clearly false")
    for p in sample.get("prompts") or []:
        m = vis[[o.id for o in scene.objects].index(p["obj_id"])][p["frame"]]
        if p["type"] == "point" and not m[p["y"], p["x"]]:
            errs.append(f"{sid}: point prompt is not on its object")
        if p["type"] == "mask" and not np.array_equal(rle_decode(p["rle"]), m):
            errs.append(f"{sid}: mask prompt differs from the object's mask")
        if p["type"] == "box" and [p["x1"], p["y1"], p["x2"], p["y2"]] != list(mask_to_box(m)):
            errs.append(f"{sid}: box prompt is not the object's box")
    if task == "editing":
        if "target_scene" not in sample:
            errs.append(f"{sid}: editing sample without a target scene")
        else:
            tscene = Scene.from_json(sample["target_scene"])
            _, tvis, _ = render(tscene)
            errs += _masks_match(tscene, tvis, sample.get("target_targets", []), sid + " (edited)")
            if tscene.to_json() == scene.to_json():
                errs.append(f"{sid}: the edit changes nothing")
    errs += check_split_rules(sample)
    return errs


def check_split_rules(sample: dict[str, Any]) -> list[str]:
    """Hold-out rules: train/val/test/long never show a held-out (color, shape) or a held-out relation pair."""
    if sample["split"] == "holdout":
        return []
    errs = []
    for key in ("scene", "target_scene"):
        if key not in sample:
            continue
        for o in sample[key]["objects"]:
            colors = {o["color"]} | ({o["color_change"][1]} if o.get("color_change") else set())
            if {(c, o["shape"]) for c in colors} & splits.HOLDOUT_COMBOS:
                errs.append(f"{sample['id']}: held-out combination in a {sample['split']} {key}")
    if sample.get("expression"):
        scene = Scene.from_json(sample["scene"])
        for e in grammar.objects_in(sample["expression"]):
            if e["kind"] == "relation":
                a = grammar.resolve(e["anchor"], scene).targets
                if a and (e["rel"], scene.obj(a[0]).shape) in splits.HOLDOUT_RELATIONS:
                    errs.append(f"{sample['id']}: held-out relation pair in {sample['split']}")
    return errs
