"""Task generators: turn one rendered scene into one sample (question, answer, targets, prompts, options).

Every generator returns a `TaskOutput` or None when the scene does not support the task (e.g. no unambiguous
expression exists); the caller then draws a new scene. Answers mark each segmented target with "[SEG]", in the
order of `targets`. All expressions are checked with `grammar.resolve` before they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pixelwise.core.masks import mask_to_box, rle_encode
from pixelwise.data.pixelworld import grammar, splits, vocab
from pixelwise.data.pixelworld.grammar import Expr
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Obj, Scene, quantize

SEG = "[SEG]"
BOX_GRID = 1000  # boxes as text are integers on a 0..1000 grid: round(coordinate * 1000 / side)
LETTERS = "ABCD"

IMAGE_TASKS: tuple[str, ...] = ("referring", "reasoning", "multi_target", "grounding", "detection", "region", "editing")
VIDEO_TASKS: tuple[str, ...] = ("referring", "motion_referring", "reasoning", "multi_target", "region", "pixelqa",
                                "editing")
ALL_TASKS: tuple[str, ...] = ("referring", "motion_referring", "reasoning", "multi_target", "grounding", "detection",
                              "region", "pixelqa", "editing")


@dataclass
class Ctx:
    scene: Scene
    frames: np.ndarray  # uint8 [T, H, W, 3]
    vis: np.ndarray  # bool [N, T, H, W]
    area: np.ndarray  # int [N, T] unoccluded in-frame area
    rng: np.random.Generator
    split: str

    @property
    def video(self) -> bool:
        return self.scene.num_frames > 1

    @property
    def media_word(self) -> str:
        return "video" if self.video else "image"

    def visible(self, oid: int, t: int) -> int:
        return int(np.count_nonzero(self.vis[self._index(oid), t]))

    def _index(self, oid: int) -> int:
        return next(i for i, o in enumerate(self.scene.objects) if o.id == oid)

    def well_visible_frames(self, oid: int) -> list[int]:
        """Frames where most of the object shows: not hidden behind others and not cut by the frame border (the
        object's largest in-frame area stands for its full area)."""
        i = self._index(oid)
        vis = self.vis[i].reshape(self.vis.shape[1], -1).sum(1)
        full = max(1, int(self.area[i].max()))
        return [t for t in range(self.scene.num_frames) if vis[t] >= max(12, 0.75 * full)]

    def choice(self, seq: Any) -> Any:
        seq = list(seq)
        return seq[int(self.rng.integers(len(seq)))]


@dataclass
class TaskOutput:
    question: str
    answer: str
    targets: list[int]  # object ids; their masks are the answer's masks, in [SEG] order
    expression: Expr | None = None
    type_id: int = 0  # 0 referring, 1 reasoning (ReVOS convention)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    options: list[str] | None = None
    correct: str | None = None
    qtype: str | None = None  # question family (region/pixelqa), e.g. "color"
    phrase: str | None = None  # the referring expression as text (RefCOCO-style sentence)
    target_scene: Scene | None = None  # editing: the scene after the edit
    target_objects: list[int] | None = None  # editing: ids whose masks are taken from the edited render
    # (for editing, `targets` are the objects the instruction refers to, masked on the *source* media)
    edit: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _holdout_first(ctx: Ctx, objs: list[Obj]) -> list[Obj]:
    """Random order; in the holdout split objects with a held-out (color, shape) combination come first."""
    order = [objs[i] for i in ctx.rng.permutation(len(objs))]
    if ctx.split == "holdout":
        order.sort(key=lambda o: (o.color, o.shape) not in splits.HOLDOUT_COMBOS)
    return order


def _eligible(ctx: Ctx, o: Obj) -> bool:
    """A target must be clearly visible: on the first frame for images, on several frames for videos."""
    if not ctx.video:
        return ctx.visible(o.id, 0) >= 15
    return len(ctx.well_visible_frames(o.id)) >= max(3, ctx.scene.num_frames // 5)


def _pick_attr(ctx: Ctx, o: Obj) -> Expr | None:
    exprs = grammar.unique_attr_exprs(ctx.scene, o)
    if not exprs:
        return None
    n_min = len(exprs[0]["filter"])
    pool = [e for e in exprs if len(e["filter"]) <= n_min + 1]
    return ctx.choice(pool)


def _check(ctx: Ctx, expr: Expr, targets: list[int]) -> bool:
    r = grammar.resolve(expr, ctx.scene)
    return not r.ambiguous and r.targets == sorted(targets)


def _relation_expr(ctx: Ctx, o: Obj) -> Expr | None:
    rels = list(vocab.RELATIONS)
    anchors = [b for b in ctx.scene.objects if b.id != o.id]
    pairs = [(rel, b) for rel in rels for b in anchors]
    pairs = [pairs[i] for i in ctx.rng.permutation(len(pairs))]
    if ctx.split == "holdout":
        pairs.sort(key=lambda p: (p[0], p[1].shape) not in splits.HOLDOUT_RELATIONS)
    heads = [f for f in grammar.attribute_filters(o) if len(f) <= 2]
    for rel, b in pairs:
        if not splits.relation_allowed(ctx.split, rel, b.shape):
            continue
        if grammar.relation_holds(ctx.scene, o, b, rel) is not True:
            continue
        anchor = _pick_attr(ctx, b)
        if anchor is None:
            continue
        for flt in heads:
            # a relation is only worth saying if the head alone is ambiguous
            if len(grammar.resolve({"kind": "attr", "filter": flt}, ctx.scene).targets) < 2:
                continue
            e = {"kind": "relation", "filter": flt, "rel": rel, "anchor": anchor}
            if _check(ctx, e, [o.id]):
                return e
    return None


def _ordinal_expr(ctx: Ctx, o: Obj) -> Expr | None:
    for flt in [f for f in grammar.attribute_filters(o) if len(f) <= 2]:
        cands = grammar.resolve({"kind": "attr", "filter": flt}, ctx.scene).targets
        if len(cands) < 2:
            continue
        for axis in ctx.rng.permutation(list(grammar.AXIS_WORDS)):
            axis = str(axis)
            keys = sorted((grammar._axis_key(ctx.scene, ctx.scene.obj(c), axis, 0), c) for c in cands)
            rank = [c for _, c in keys].index(o.id) + 1
            if rank > len(grammar.ORDINALS):
                continue
            e = {"kind": "ordinal", "filter": flt, "axis": axis, "rank": rank}
            if _check(ctx, e, [o.id]):
                return e
    return None


def _motion_expr(ctx: Ctx, o: Obj) -> Expr | None:
    facts = grammar.motion_facts(ctx.scene)[o.id]
    true = [f for f in grammar.MOTION_FACTS if facts.get(f) is True]
    for fact in [true[i] for i in ctx.rng.permutation(len(true))]:
        heads = [f for f in grammar.attribute_filters(o) if len(f) <= 2 and ("color" not in f or o.color_change is None)
                 and ("size" not in f or o.size_change is None)]
        for flt in [{}] + heads:
            e = {"kind": "motion", "filter": flt, "motion": fact}
            if _check(ctx, e, [o.id]):
                return e
    return None


def referring_expression(ctx: Ctx, kinds: tuple[str, ...]) -> tuple[Expr, Obj] | None:
    """Find an unambiguous expression of one of `kinds` for some clearly visible object."""
    for o in _holdout_first(ctx, ctx.scene.objects):
        if not _eligible(ctx, o):
            continue
        for kind in [kinds[i] for i in ctx.rng.permutation(len(kinds))]:
            e = {"attr": _pick_attr, "relation": _relation_expr, "ordinal": _ordinal_expr,
                 "motion": _motion_expr}[kind](ctx, o)
            if e is not None and _check(ctx, e, [o.id]):
                return e, o
    return None


SEGMENT_Q = (
    "Please segment {e}.", "Can you segment {e} in this {m}?", "Where is {e}? Please respond with a segmentation mask.",
    "Find {e} and output its mask.", "Highlight {e}.", "Segment {e} in the {m}.",
)
SEGMENT_A = ("Sure, {d} {s}.", "It is {d} {s}.", "{D} {s}.", "Here it is: {d} {s}.")


def _seg_answer(ctx: Ctx, o: Obj) -> str:
    d = grammar.describe_object(o)
    return str(ctx.choice(SEGMENT_A)).format(d=d, D=_cap(d), s=SEG)


# ----------------------------------------------------------------------------------------------------------------
# tasks


def task_referring(ctx: Ctx) -> TaskOutput | None:
    kinds = ("attr", "motion") if ctx.video else ("attr", "attr", "relation", "ordinal")
    found = referring_expression(ctx, kinds)
    if found is None:
        return None
    e, o = found
    phrase = grammar.realize(e, ctx.rng)
    q = str(ctx.choice(SEGMENT_Q)).format(e=phrase, m=ctx.media_word)
    return TaskOutput(q, _seg_answer(ctx, o), [o.id], e, phrase=phrase)


def task_motion_referring(ctx: Ctx) -> TaskOutput | None:
    if not ctx.video:
        return None
    found = referring_expression(ctx, ("motion",))
    if found is None:
        return None
    e, o = found
    phrase = grammar.realize(e, ctx.rng)
    q = str(ctx.choice(SEGMENT_Q)).format(e=phrase, m="video")
    return TaskOutput(q, _seg_answer(ctx, o), [o.id], e, phrase=phrase)


def _reasoning_candidates(ctx: Ctx) -> list[tuple[Expr, Callable[[Obj], str]]]:
    sc = ctx.scene
    out: list[tuple[Expr, Callable[[Obj], str]]] = []
    out.append(({"kind": "most_corners", "filter": {}},
                lambda o: f"The {o.shape} has {vocab.CORNERS[o.shape]} corners, more than any other shape, so the "
                          f"answer is {grammar.describe_object(o)}"))
    for which in ("largest", "smallest"):
        out.append(({"kind": "extreme_size", "filter": {}, "which": which},
                    lambda o, w=which: f"It is the only {o.size} object, so it is the {w} one: "
                                      f"{grammar.describe_object(o)}"))
    if ctx.video:
        out.append(({"kind": "farthest_traveled", "filter": {}},
                    lambda o: f"Its center travels about {grammar.path_length(o) / ctx.scene.width:.1f} frame widths, "
                              f"clearly more than any other object, so the answer is {grammar.describe_object(o)}"))
    for b in sc.objects:
        # the anchor must not already name the attribute the question is about ("the color of the blue star")
        exprs = grammar.unique_attr_exprs(sc, b)
        no_color = [e for e in exprs if "color" not in e["filter"]]
        no_shape = [e for e in exprs if "shape" not in e["filter"]]
        if ctx.video and ctx.rng.random() < 0.5:
            m = _motion_expr(ctx, b)
            if m is not None and "color" not in m["filter"] and "shape" not in m["filter"]:
                no_color, no_shape = [m], [m]
        if no_color:
            anchor = ctx.choice(no_color[:3])
            out.append(({"kind": "same_color", "filter": {}, "anchor": anchor},
                    lambda o, b=b, a=anchor: f"{_cap(grammar.realize(a, ctx.rng))} is {b.color}, and the only other "
                                             f"{b.color} object is {grammar.describe_object(o)}"))
        if no_shape:
            anchor = ctx.choice(no_shape[:3])
            out.append(({"kind": "same_shape", "filter": {}, "anchor": anchor},
                        lambda o, b=b, a=anchor: f"{_cap(grammar.realize(a, ctx.rng))} is a {b.shape}, and the only "
                                                 f"other {b.shape} is {grammar.describe_object(o)}"))
        if not ctx.video and exprs:
            anchor = ctx.choice(exprs[:3])
            out.append(({"kind": "closest", "filter": {}, "anchor": anchor},
                        lambda o, a=anchor: f"Measuring from {grammar.realize(a, ctx.rng)}, the nearest object is "
                                            f"{grammar.describe_object(o)}"))
    return out


REASON_Q = {
    "most_corners": ("Which shape has the most corners? Please segment it.",
                     "Segment the shape with the largest number of corners.",
                     "Count the corners of every shape and segment the one with the most."),
    "extreme_size": ("Which object is the {w}? Please output its mask.", "Segment the {w} object in the {m}.",
                     "Find the object that is {w} of all and segment it."),
    "same_color": ("Segment {e}.", "Which object has the same color as {a}? Please segment it.",
                   "Look at {a}; segment the other object that shares its color."),
    "same_shape": ("Segment {e}.", "Which other object has the same shape as {a}? Output its mask."),
    "closest": ("Which object is closest to {a}? Please segment it.", "Segment {e}."),
    "farthest_traveled": ("Which object moves the most during the video? Please segment it.", "Segment {e}.",
                          "Track every object; segment the one whose path is the longest."),
}


def task_reasoning(ctx: Ctx) -> TaskOutput | None:
    # pick the kind of inference first, so kinds with one candidate per object ("closest to X") do not crowd out
    # the others ("most corners")
    by_kind: dict[str, list[tuple[Expr, Callable[[Obj], str]]]] = {}
    for c in _reasoning_candidates(ctx):
        by_kind.setdefault(c[0]["kind"], []).append(c)
    kinds = sorted(by_kind)
    ordered = []
    for k in ctx.rng.permutation(len(kinds)):
        group = by_kind[kinds[int(k)]]
        ordered += [group[int(i)] for i in ctx.rng.permutation(len(group))]
    for e, explain in ordered:
        r = grammar.resolve(e, ctx.scene)
        if not r.unique:
            continue
        o = ctx.scene.obj(r.targets[0])
        if not _eligible(ctx, o):
            continue
        if e["kind"] == "most_corners" and len([x for x in ctx.scene.objects if vocab.CORNERS[x.shape] > 0]) < 2:
            continue
        tmpl = str(ctx.choice(REASON_Q[e["kind"]]))
        q = tmpl.format(e=grammar.realize(e, ctx.rng), m=ctx.media_word, w=e.get("which", ""),
                        a=grammar.realize(e["anchor"], ctx.rng) if "anchor" in e else "")
        return TaskOutput(q, f"{explain(o)} {SEG}.", [o.id], e, type_id=1)
    return None


MULTI_Q = ("Segment all {p}.", "Find every {s} in the {m}.", "Where are the {p}? Segment each of them.",
           "Please segment all the {p} in this {m}.")


def _reading_order(ctx: Ctx, ids: list[int]) -> list[int]:
    def key(i: int) -> tuple[float, float]:
        o = ctx.scene.obj(i)
        return (round(float(o.y[0]) / 16), float(o.x[0]))
    return sorted(ids, key=key)


def task_multi_target(ctx: Ctx) -> TaskOutput | None:
    sc = ctx.scene
    zero = ctx.rng.random() < 0.2
    filters: list[dict[str, str]] = []
    if zero:
        for _ in range(20):
            key = ctx.choice(("color", "shape", "color+shape"))
            flt = {}
            if "color" in key:
                flt["color"] = ctx.choice(list(vocab.COLORS))
            if "shape" in key:
                flt["shape"] = ctx.choice(vocab.SHAPES)
            if ctx.split != "holdout" and (flt.get("color"), flt.get("shape")) in splits.HOLDOUT_COMBOS:
                continue
            filters.append(flt)
    else:
        for o in _holdout_first(ctx, sc.objects):
            filters += [f for f in grammar.attribute_filters(o) if len(f) <= 2]
    for flt in filters:
        e = {"kind": "all", "filter": flt}
        r = grammar.resolve(e, sc)
        if r.ambiguous or (zero and r.targets) or (not zero and len(r.targets) < 2):
            continue
        if not all(_eligible(ctx, sc.obj(i)) for i in r.targets):
            continue
        plural = grammar.noun_phrase(flt, plural=True)
        single = grammar.noun_phrase(flt, plural=False)
        q = str(ctx.choice(MULTI_Q)).format(p=plural, s=single, m=ctx.media_word)
        if zero:
            a = str(ctx.choice(("There is no {s} in the {m}.", "No {s} can be found in the {m}.",
                                "Nothing matches: the {m} contains no {s}."))).format(s=single, m=ctx.media_word)
            return TaskOutput(q, a, [], e)
        ids = _reading_order(ctx, r.targets)
        names = [f"{grammar.describe_object(sc.obj(i))} {SEG}" for i in ids]
        listing = ", ".join(names[:-1]) + " and " + names[-1]
        return TaskOutput(q, f"There are {len(ids)} {plural}: {listing}.", ids, e)
    return None


def box_text(box: tuple[int, int, int, int], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    g = [round(x1 * BOX_GRID / width), round(y1 * BOX_GRID / height), round(x2 * BOX_GRID / width),
         round(y2 * BOX_GRID / height)]
    return "<box>{},{},{},{}</box>".format(*g)


def _box(ctx: Ctx, oid: int, t: int = 0) -> tuple[int, int, int, int]:
    b = mask_to_box(ctx.vis[ctx._index(oid), t])
    assert b is not None
    return b


def task_grounding(ctx: Ctx) -> TaskOutput | None:
    if ctx.video:
        return None
    found = referring_expression(ctx, ("attr", "relation", "ordinal"))
    if found is None:
        return None
    e, o = found
    phrase = grammar.realize(e, ctx.rng)
    q = str(ctx.choice(("Where is {e}? Answer with a bounding box.", "Give the bounding box of {e}.",
                        "Locate {e} and output its box."))).format(e=phrase)
    bt = box_text(_box(ctx, o.id), ctx.scene.width, ctx.scene.height)
    return TaskOutput(q, f"{_cap(grammar.describe_object(o))} {bt}.", [o.id], e, phrase=phrase)


def task_detection(ctx: Ctx) -> TaskOutput | None:
    if ctx.video:
        return None
    shapes = sorted({o.shape for o in ctx.scene.objects})
    shape = ctx.choice(shapes if ctx.rng.random() < 0.85 else vocab.SHAPES)
    e = {"kind": "all", "filter": {"shape": shape}}
    r = grammar.resolve(e, ctx.scene)
    if not all(_eligible(ctx, ctx.scene.obj(i)) for i in r.targets):
        return None
    plural = grammar.noun_phrase({"shape": shape}, plural=True)
    q = str(ctx.choice(("Detect every {s}.", "Detect all {p} in the image.", "Output a box for each {s}."))).format(
        p=plural, s=shape)
    if not r.targets:
        return TaskOutput(q, f"There is no {shape} in the image.", [], e)
    ids = _reading_order(ctx, r.targets)
    boxes = "".join(box_text(_box(ctx, i), ctx.scene.width, ctx.scene.height) for i in ids)
    return TaskOutput(q, boxes, ids, e)


# ----------------------------------------------------------------------------------------------------------------
# visual prompts, region questions, PixelQA


def _interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel deepest inside the mask (max distance to the border): a point a person would click."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def make_prompt(ctx: Ctx, oid: int, t: int, kind: str) -> dict[str, Any]:
    m = ctx.vis[ctx._index(oid), t]
    if kind == "point":
        x, y = _interior_point(m)
        return {"type": "point", "x": x, "y": y, "frame": t, "obj_id": oid}
    if kind == "box":
        x1, y1, x2, y2 = _box(ctx, oid, t)
        return {"type": "box", "x1": x1, "y1": y1, "x2": x2, "y2": y2, "frame": t, "obj_id": oid}
    return {"type": "mask", "rle": rle_encode(m), "frame": t, "obj_id": oid}


def _options(ctx: Ctx, correct: str, pool: list[str]) -> tuple[list[str], str]:
    others = [p for p in pool if p != correct]
    others = [others[i] for i in ctx.rng.permutation(len(others))][:3]
    opts = others + [correct]
    opts = [opts[i] for i in ctx.rng.permutation(len(opts))]
    letter = LETTERS[opts.index(correct)]
    return [f"({LETTERS[i]}) {o}" for i, o in enumerate(opts)], letter


COUNT_WORDS = ("none", "one", "two", "three", "four", "five")
DIRECTION_WORDS = {"moves_left": "left", "moves_right": "right", "moves_up": "up", "moves_down": "down"}
EVENT_WORDS = {"stops": "It stops halfway", "accelerates": "It speeds up", "turns": "It turns by a right angle",
               "bounces": "It bounces off the edge", "leaves": "It leaves the frame", "enters": "It enters the frame",
               "changes_color": "It changes color", "grows": "It grows", "shrinks": "It shrinks",
               "static": "It stays still"}


def video_choice_question(ctx: Ctx, o: Obj, region: str) -> tuple[str, str, list[str], str] | None:
    """A multiple-choice question about an object across the video: (question, qtype, options, correct letter)."""
    facts = grammar.motion_facts(ctx.scene)[o.id]
    kinds = ["color", "shape"]
    if any(facts[f] is True for f in DIRECTION_WORDS) and all(facts[f] is not None for f in DIRECTION_WORDS):
        kinds.append("direction")
    events = [f for f in EVENT_WORDS if facts.get(f) is True]
    if events and all(facts.get(f) is not None for f in EVENT_WORDS):
        kinds += ["event", "event"]
    if all(x.color_change is None for x in ctx.scene.objects):
        kinds.append("count")
    kind = ctx.choice(kinds)
    if kind == "count":
        n = sum(1 for x in ctx.scene.objects if x.id != o.id and x.color == o.color)
        if n >= len(COUNT_WORDS):
            return None
        q, correct = f"How many other objects have the same color as {region}?", COUNT_WORDS[n]
        opts, letter = _options(ctx, correct, list(COUNT_WORDS))
    elif kind == "color":
        if o.color_change is not None:
            q, correct = f"What color is {region} at the end of the video?", o.color_change[1]
        else:
            q, correct = f"What color is {region}?", o.color
        opts, letter = _options(ctx, correct, list(vocab.COLORS))
    elif kind == "shape":
        q, correct = f"What shape is {region}?", o.shape
        opts, letter = _options(ctx, correct, list(vocab.SHAPES))
    elif kind == "direction":
        correct = next(DIRECTION_WORDS[f] for f in DIRECTION_WORDS if facts[f])
        q = f"In which direction does {region} move?"
        opts, letter = _options(ctx, correct, ["left", "right", "up", "down"])
    else:
        ev = ctx.choice(events)
        correct = EVENT_WORDS[ev]
        pool = [w for f, w in EVENT_WORDS.items() if facts.get(f) is False]
        if len(pool) < 3:
            return None
        q = f"What happens to {region} during the video?"
        opts, letter = _options(ctx, correct, pool + [correct])
    return q, kind, opts, letter


def task_region(ctx: Ctx) -> TaskOutput | None:
    sc = ctx.scene
    for o in _holdout_first(ctx, sc.objects):
        if not _eligible(ctx, o):
            continue
        if not ctx.video:
            kind = ctx.choice(("point", "box", "mask"))
            p = make_prompt(ctx, o.id, 0, kind)
            if kind == "box" and not _box_is_clear(ctx, o.id, p):
                continue
            qtype = ctx.choice(("describe", "describe", "color", "shape", "count"))
            if qtype == "describe":
                q = ctx.choice(("Describe <region>.", "What is in <region>?", "Give a short description of <region>."))
                a = _cap(grammar.describe_object(o)) + "."
            elif qtype == "color":
                q, a = "What color is <region>?", f"It is {o.color}."
            elif qtype == "shape":
                q, a = "What shape is <region>?", f"It is a {o.shape}."
            else:
                n = sum(1 for x in sc.objects if x.id != o.id and x.color == o.color)
                q = "How many other objects have the same color as <region>?"
                a = ["None.", "One.", "Two.", "Three.", "Four.", "Five.", "Six."][n]
            return TaskOutput(q, a, [o.id], prompts=[p], qtype=qtype)
        frames = ctx.well_visible_frames(o.id)
        multi = ctx.rng.random() < 0.5 and len(frames) >= 4
        chosen = sorted(ctx.rng.choice(frames, size=4 if multi else 1, replace=False).tolist())
        # VideoRefer gives masks; points and boxes (as in PixelQA) keep models honest about other prompt kinds
        kind = "mask" if ctx.rng.random() < 0.6 else ctx.choice(("point", "box"))
        prompts = [make_prompt(ctx, o.id, int(t), kind) for t in chosen]
        if kind == "box" and not all(_box_is_clear(ctx, o.id, p) for p in prompts):
            prompts = [make_prompt(ctx, o.id, int(t), "mask") for t in chosen]
        mc = video_choice_question(ctx, o, "<region>")
        if mc is None:
            continue
        q, qtype, opts, letter = mc
        question = q + " " + " ".join(opts) + " Answer with the option's letter from the given choices directly."
        return TaskOutput(question, f"({letter})", [o.id], prompts=prompts, options=opts, correct=letter, qtype=qtype)
    return None


def _box_is_clear(ctx: Ctx, oid: int, p: dict[str, Any]) -> bool:
    """A box prompt must mostly contain its object (not another one that happens to lie inside it)."""
    i = ctx._index(oid)
    sl = (slice(p["y1"], p["y2"]), slice(p["x1"], p["x2"]))
    own = np.count_nonzero(ctx.vis[i, p["frame"]][sl])
    for j in range(len(ctx.scene.objects)):
        if j != i and np.count_nonzero(ctx.vis[j, p["frame"]][sl]) > 0.5 * own:
            return False
    return True


def task_pixelqa(ctx: Ctx) -> TaskOutput | None:
    if not ctx.video:
        return None
    for o in _holdout_first(ctx, ctx.scene.objects):
        if not _eligible(ctx, o):
            continue
        t = int(ctx.choice(ctx.well_visible_frames(o.id)))
        kind = ctx.choice(("point", "box"))
        p = make_prompt(ctx, o.id, t, kind)
        if kind == "box" and not _box_is_clear(ctx, o.id, p):
            p = make_prompt(ctx, o.id, t, "point")
        mc = video_choice_question(ctx, o, "<region>")
        if mc is None:
            continue
        q, qtype, opts, letter = mc
        question = (f"{q} {' '.join(opts)} Segment the object through the video and answer with the option's letter.")
        correct_text = opts[LETTERS.index(letter)]
        return TaskOutput(question, f"The object is {grammar.describe_object(o)} {SEG}. The best option is "
                          f"{correct_text}.", [o.id], prompts=[p], options=opts, correct=letter, qtype=qtype)
    return None


# ----------------------------------------------------------------------------------------------------------------
# editing


QUADRANTS = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73),
             "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
MOVE_DIRS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def task_editing(ctx: Ctx) -> TaskOutput | None:
    sc = ctx.scene
    op = ctx.choice(("remove", "recolor", "move", "add"))
    edited = sc.copy()
    W, H = sc.width, sc.height
    if op == "add":
        shape = ctx.choice(vocab.SHAPES)
        color = ctx.choice([c for c in vocab.COLORS if ctx.split == "holdout" or (c, shape) not in
                            splits.HOLDOUT_COMBOS])
        size = ctx.choice(("medium", "large"))
        where = ctx.choice(list(QUADRANTS))
        fx, fy = QUADRANTS[where]
        T = sc.num_frames
        new_id = max(o.id for o in sc.objects) + 1
        r = vocab.radius_for(size, W)
        new = Obj(id=new_id, shape=shape, color=color, size=size, texture="solid",
                   z=max(o.z for o in sc.objects) + 1, x=quantize(np.full(T, fx * W)), y=quantize(np.full(T, fy * H)),
                   r=quantize(np.full(T, r)))
        edited.objects.append(new)
        instr = str(ctx.choice(("Draw a {c} {s} at the {w}.", "Add a {sz} {c} {s} in the {w}.",
                                "Put a {c} {s} at the {w} of the {m}."))).format(c=color, s=shape, w=where, sz=size,
                                                                                   m=ctx.media_word)
        _, vis2, _ = render(edited)
        # the new object must not bury an existing one
        for i, o in enumerate(sc.objects):
            before = ctx.vis[i].reshape(T, -1).sum(1)
            after = vis2[i].reshape(T, -1).sum(1)
            if np.any((before > 0) & (after < 0.5 * before)):
                return None
        return TaskOutput(instr, f"Done: added a {size} {color} {shape} at the {where}.", [],
                          target_scene=edited, target_objects=[new_id],
                          edit={"op": "add", "shape": shape, "color": color, "size": size, "where": where})
    found = referring_expression(ctx, ("attr",))
    if found is None:
        return None
    e, o = found
    ref = grammar.realize(e, ctx.rng)
    eo = edited.obj(o.id)
    if op == "remove":
        edited.objects = [x for x in edited.objects if x.id != o.id]
        instr = str(ctx.choice(("Remove {e}.", "Delete {e} from the {m}.", "Erase {e}."))).format(e=ref,
                                                                                                  m=ctx.media_word)
        return TaskOutput(instr, f"Done: removed {grammar.describe_object(o)}.", [o.id], e, target_scene=edited,
                          target_objects=[], edit={"op": "remove", "obj_id": o.id})
    if op == "recolor":
        if o.color_change is not None:
            return None
        new = ctx.choice([c for c in vocab.COLORS if c != o.color and (ctx.split == "holdout" or
                                                                         (c, o.shape) not in splits.HOLDOUT_COMBOS)])
        eo.color = new
        instr = str(ctx.choice(("Make {e} {c}.", "Change the color of {e} to {c}.", "Paint {e} {c}."))).format(
            e=ref, c=new)
        return TaskOutput(instr, f"Done: {grammar.realize(e, ctx.rng)} is now {new}.", [o.id], e,
                          target_scene=edited, target_objects=[o.id], edit={"op": "recolor", "obj_id": o.id,
                                                                            "color": new})
    # move: shift the whole trajectory by a quarter of the frame, staying inside
    d = ctx.choice(list(MOVE_DIRS))
    dx, dy = MOVE_DIRS[d]
    step = 0.25 * W
    nx, ny = eo.x + dx * step, eo.y + dy * step
    r = float(eo.r.max())
    if ctx.video is False and not (r <= nx[0] <= W - r and r <= ny[0] <= H - r):
        return None
    if ctx.video and (np.any(nx < -r) or np.any(nx > W + r) or np.any(ny < -r) or np.any(ny > H + r)):
        return None
    eo.x, eo.y = quantize(nx), quantize(ny)
    instr = str(ctx.choice(("Move {e} to the {d}.", "Shift {e} {d2}.", "Push {e} a bit to the {d}."))).format(
        e=ref, d=d if d in ("left", "right") else {"up": "top", "down": "bottom"}[d], d2=d)
    if d in ("up", "down"):
        instr = instr.replace("to the top", "up").replace("to the bottom", "down")
    return TaskOutput(instr, f"Done: moved {grammar.describe_object(o)} {d}.", [o.id], e, target_scene=edited,
                      target_objects=[o.id], edit={"op": "move", "obj_id": o.id, "direction": d,
                                                   "pixels": float(step)})


TASKS: dict[str, Callable[[Ctx], TaskOutput | None]] = {
    "referring": task_referring,
    "motion_referring": task_motion_referring,
    "reasoning": task_reasoning,
    "multi_target": task_multi_target,
    "grounding": task_grounding,
    "detection": task_detection,
    "region": task_region,
    "pixelqa": task_pixelqa,
    "editing": task_editing,
}
