"""Referring expressions: a small compositional grammar, its text realisation, and a resolver.

An expression is a plain dict (JSON-ready, stored with every sample) such as
`{"kind": "relation", "filter": {"shape": "circle"}, "rel": "left_of", "anchor": {"kind": "attr", ...}}`.
`resolve(expr, scene)` returns the objects it denotes *and* whether any object is a borderline case (two objects
almost level, a color that changes during the clip, ...). The generator only keeps expressions that resolve to
exactly their targets with no borderline case, and the tests re-run the resolver on every exported sample.

Predicates are three-valued (True / False / None = "a person could not tell"); any None among the candidates
makes the whole expression ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.scene import Obj, Scene

Expr = dict[str, Any]
ATTRS = ("size", "color", "texture", "shape")
REL_MARGIN = 0.07  # fraction of the frame: closer than this along the axis is "too close to call"
ORDINALS = ("first", "second", "third", "fourth")
AXIS_WORDS = {"top": "from the top", "bottom": "from the bottom", "left": "from the left", "right": "from the right"}
EXTREME_WORDS = {"top": "topmost", "bottom": "bottommost", "left": "leftmost", "right": "rightmost"}

MOTION_FACTS = ("moves_left", "moves_right", "moves_up", "moves_down", "static", "stops", "accelerates", "turns",
                "bounces", "enters", "leaves", "appears_last", "changes_color", "grows", "shrinks")
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "moves_left": ("that moves to the left", "moving left", "that travels leftwards"),
    "moves_right": ("that moves to the right", "moving right", "that travels rightwards"),
    "moves_up": ("that moves up", "moving upwards", "that travels towards the top"),
    "moves_down": ("that moves down", "moving downwards", "that travels towards the bottom"),
    "static": ("that does not move", "that stays still", "that never moves"),
    "stops": ("that stops halfway", "that moves and then stops", "that comes to a halt"),
    "accelerates": ("that speeds up", "that accelerates", "that moves faster and faster"),
    "turns": ("that turns", "that changes direction by a right angle", "that takes a turn"),
    "bounces": ("that bounces off the edge", "that bounces back", "that rebounds from the border"),
    "enters": ("that enters the frame", "that comes into view", "that arrives from outside"),
    "leaves": ("that leaves the frame", "that exits the scene", "that moves out of view"),
    "appears_last": ("that appears last", "that shows up last", "that is the last to appear"),
    "changes_color": ("that changes color", "whose color changes", "that switches color"),
    "grows": ("that grows", "that gets bigger", "that becomes larger"),
    "shrinks": ("that shrinks", "that gets smaller", "that becomes smaller"),
}


@dataclass
class Resolution:
    targets: list[int]  # object ids, sorted
    ambiguous: bool  # some candidate is a borderline case

    @property
    def unique(self) -> bool:
        return len(self.targets) == 1 and not self.ambiguous


# ----------------------------------------------------------------------------------------------------------------
# Predicates


def attr_match(o: Obj, key: str, value: str) -> bool | None:
    if key == "shape":
        return o.shape == value
    if key == "texture":
        return o.texture == value
    if key == "color":
        if o.color_change is not None:
            return None if value in o.colors else False
        return o.color == value
    if key == "size":
        if o.size_change is not None:
            return None if value in (o.size, o.size_change) else False
        return o.size == value
    raise ValueError(f"unknown attribute {key!r}")


def filter_match(o: Obj, flt: dict[str, str]) -> bool | None:
    result: bool | None = True
    for k, v in flt.items():
        m = attr_match(o, k, v)
        if m is False:
            return False
        if m is None:
            result = None
    return result


def _in_view(scene: Scene, o: Obj) -> np.ndarray:
    return (o.x >= 0) & (o.x < scene.width) & (o.y >= 0) & (o.y < scene.height)


def motion_facts(scene: Scene) -> dict[int, dict[str, bool | None]]:
    """Motion predicates of every object, derived from its trajectory only (never from the generator's label)."""
    return _motion_facts_cached(id(scene), scene)


_FACT_CACHE: dict[int, tuple[Scene, dict]] = {}


def _motion_facts_cached(key: int, scene: Scene) -> dict[int, dict[str, bool | None]]:
    hit = _FACT_CACHE.get(key)
    if hit is not None and hit[0] is scene:
        return hit[1]
    facts = {o.id: _object_facts(scene, o) for o in scene.objects}
    _appear_last(scene, facts)
    if len(_FACT_CACHE) > 64:
        _FACT_CACHE.clear()
    _FACT_CACHE[key] = (scene, facts)
    return facts


def _object_facts(scene: Scene, o: Obj) -> dict[str, bool | None]:
    T, S = scene.num_frames, float(min(scene.width, scene.height))
    # speed thresholds are in units of "frame sizes per clip" so that a 320-frame clip is judged like a 32-frame
    # one (constants below were tuned at 128 px / 32 frames, where unit = 4 px per frame)
    unit = S / max(T - 1, 1) / 4.0
    f: dict[str, bool | None] = {}
    view = _in_view(scene, o)
    vt = np.flatnonzero(view)
    dx, dy = float(o.x[-1] - o.x[0]), float(o.y[-1] - o.y[0])
    v = np.stack([np.diff(o.x), np.diff(o.y)], 1) if T > 1 else np.zeros((0, 2))
    speed = np.linalg.norm(v, axis=1)
    path = float(speed.sum())
    # direction changes: compare unit displacements (over w frames, ~1/32 of the clip, so that slow motion in long
    # clips is not lost in the 1/16 px position grid) 3 windows apart, among moving windows
    w = max(1, round(T / 32))
    vw = np.stack([o.x[w:] - o.x[:-w], o.y[w:] - o.y[:-w]], 1) if T > w else np.zeros((0, 2))
    sw = np.linalg.norm(vw, axis=1)
    moving = sw > 0.15 * unit * w
    u = np.where(moving[:, None], vw / np.maximum(sw, 1e-9)[:, None], 0)
    k = 3 * w
    dots = (u[:-k] * u[k:]).sum(1)[moving[:-k] & moving[k:]] if len(u) > k else np.zeros(0)
    bounces = bool((dots < -0.8).any())
    turns = bool(((np.abs(dots) < 0.35)).any()) and not bounces
    mid_dots = bool(((dots > -0.8) & (dots < -0.35)).any() or ((dots > 0.35) & (dots < 0.8)).any())
    f["bounces"] = bounces
    f["turns"] = None if (mid_dots and not (turns or bounces)) else turns
    straight = not bounces and not turns
    for name, (ax, sign) in {"moves_left": (0, -1), "moves_right": (0, 1), "moves_up": (1, -1),
                             "moves_down": (1, 1)}.items():
        along, perp = (dx, dy) if ax == 0 else (dy, dx)
        along *= sign
        if along >= 0.15 * S and along >= 2 * abs(perp) and straight:
            f[name] = True
        elif along <= 0.04 * S or along <= abs(perp):
            f[name] = False if straight or along <= 0 else None
        else:
            f[name] = None
    f["static"] = True if path < 0.5 else (False if path > 4 else None)
    n = max(3, T // 4)
    first_frame = int(vt[0]) if len(vt) else T
    last_frame = int(vt[-1]) if len(vt) else -1
    f["enters"] = first_frame > 0 if len(vt) else None
    f["leaves"] = last_frame < T - 1 if len(vt) else None
    if T > 2 * n:
        early, late = float(speed[:n].mean()), float(speed[-n:].mean())
        if first_frame > 0 or f["leaves"]:
            f["stops"] = None if path > 4 else False
        elif early > 0.3 * unit and late < 0.02 * unit:
            f["stops"] = True
        elif late > 0.15 * unit or path < 0.5:
            f["stops"] = False
        else:
            f["stops"] = None
        third = max(2, T // 3)
        e3, l3 = float(speed[:third].mean()), float(speed[-third:].mean())
        if first_frame > 0 or f["leaves"]:
            f["accelerates"] = None if path > 4 else False
        elif l3 > 0.4 * unit and l3 > 2.0 * e3 and straight:
            f["accelerates"] = True
        elif l3 < 1.4 * e3 + 0.05 * unit or path < 0.5:
            f["accelerates"] = False
        else:
            f["accelerates"] = None
    else:
        f["stops"] = f["accelerates"] = None
    f["changes_color"] = o.color_change is not None
    ratio = float(o.r[-1] / o.r[0])
    f["grows"] = ratio > 1.2
    f["shrinks"] = ratio < 0.83
    f["_first_frame"] = first_frame  # type: ignore[assignment]
    return f


def _appear_last(scene: Scene, facts: dict[int, dict[str, Any]]) -> None:
    firsts = sorted(((facts[o.id]["_first_frame"], o.id) for o in scene.objects), reverse=True)
    for o in scene.objects:
        facts[o.id]["appears_last"] = False
    if not firsts:
        return
    top, top_id = firsts[0]
    gap = top - firsts[1][0] if len(firsts) > 1 else top
    if top > 0 and top < scene.num_frames and gap >= 3:
        facts[top_id]["appears_last"] = True
    elif top > 0:
        for ff, oid in firsts:
            if top - ff < 3:
                facts[oid]["appears_last"] = None


def path_length(o: Obj) -> float:
    """Distance (px) the object's center travels over the clip."""
    return float(np.hypot(np.diff(o.x), np.diff(o.y)).sum()) if len(o.x) > 1 else 0.0


def position(scene: Scene, o: Obj, frame: int = 0) -> tuple[float, float]:
    return float(o.x[frame]), float(o.y[frame])


def relation_holds(scene: Scene, a: Obj, b: Obj, rel: str, frame: int = 0) -> bool | None:
    """Is `a` rel `b` (e.g. a left of b)? None when the two are almost level along that axis."""
    (ax, ay), (bx, by) = position(scene, a, frame), position(scene, b, frame)
    d = {"left_of": bx - ax, "right_of": ax - bx, "above": by - ay, "below": ay - by}[rel]
    m = REL_MARGIN * min(scene.width, scene.height)
    if d > m:
        return True
    if d < -m or abs(d) <= 1e-9:
        return False if d < -m else None
    return None


# ----------------------------------------------------------------------------------------------------------------
# Resolution


def _candidates(scene: Scene, flt: dict[str, str], exclude: set[int] = frozenset()) -> tuple[list[Obj], bool]:
    out, amb = [], False
    for o in scene.objects:
        if o.id in exclude:
            continue
        m = filter_match(o, flt)
        if m is None:
            amb = True
        elif m:
            out.append(o)
    return out, amb


def _axis_key(scene: Scene, o: Obj, axis: str, frame: int) -> float:
    x, y = position(scene, o, frame)
    return {"top": y, "bottom": -y, "left": x, "right": -x}[axis]


def resolve(expr: Expr, scene: Scene) -> Resolution:
    """The object ids an expression denotes in a scene, and whether the call was borderline anywhere."""
    kind = expr["kind"]
    flt = expr.get("filter", {})
    frame = int(expr.get("frame", 0))
    if kind in ("attr", "all"):
        cands, amb = _candidates(scene, flt)
        return Resolution(sorted(o.id for o in cands), amb)
    if kind == "relation":
        anchor = resolve(expr["anchor"], scene)
        if not anchor.unique:
            return Resolution([], True)
        b = scene.obj(anchor.targets[0])
        cands, amb = _candidates(scene, flt, {b.id})
        out = []
        for o in cands:
            h = relation_holds(scene, o, b, expr["rel"], frame)
            if h is None:
                amb = True
            elif h:
                out.append(o.id)
        return Resolution(sorted(out), amb)
    if kind == "ordinal":
        cands, amb = _candidates(scene, flt)
        rank = int(expr["rank"])
        if len(cands) < rank:
            return Resolution([], amb)
        keys = sorted((_axis_key(scene, o, expr["axis"], frame), o.id) for o in cands)
        m = REL_MARGIN * min(scene.width, scene.height)
        k = rank - 1
        if (k > 0 and keys[k][0] - keys[k - 1][0] <= m) or (k + 1 < len(keys) and keys[k + 1][0] - keys[k][0] <= m):
            amb = True
        return Resolution([keys[k][1]], amb)
    if kind == "motion":
        cands, amb = _candidates(scene, flt)
        facts = motion_facts(scene)
        out = []
        for o in cands:
            v = facts[o.id][expr["motion"]]
            if v is None:
                amb = True
            elif v:
                out.append(o.id)
        return Resolution(sorted(out), amb)
    if kind == "most_corners":
        cands, amb = _candidates(scene, flt)
        if not cands:
            return Resolution([], amb)
        best = max(vocab.CORNERS[o.shape] for o in cands)
        top = [o.id for o in cands if vocab.CORNERS[o.shape] == best]
        return Resolution(sorted(top), amb)
    if kind == "extreme_size":
        cands, amb = _candidates(scene, flt)
        if not cands or any(o.size_change for o in cands):
            return Resolution([], True)
        rank = {s: i for i, s in enumerate(vocab.SIZES)}
        pick = max if expr["which"] == "largest" else min
        best = pick(rank[o.size] for o in cands)
        return Resolution(sorted(o.id for o in cands if rank[o.size] == best), amb)
    if kind == "farthest_traveled":
        # the object whose center covers the longest path; the runner-up must be clearly behind (< 75 %)
        cands, amb = _candidates(scene, flt)
        if not cands:
            return Resolution([], amb)
        paths = sorted(((path_length(o), o.id) for o in cands), reverse=True)
        if len(paths) > 1 and paths[1][0] >= 0.75 * paths[0][0]:
            amb = True
        return Resolution([paths[0][1]], amb)
    if kind in ("same_color", "same_shape"):
        anchor = resolve(expr["anchor"], scene)
        if not anchor.unique:
            return Resolution([], True)
        b = scene.obj(anchor.targets[0])
        key = "color" if kind == "same_color" else "shape"
        value = b.color if key == "color" else b.shape
        if key == "color" and b.color_change is not None:
            return Resolution([], True)
        cands, amb = _candidates(scene, {**flt, key: value}, {b.id})
        return Resolution(sorted(o.id for o in cands), amb)
    if kind == "closest":
        anchor = resolve(expr["anchor"], scene)
        if not anchor.unique:
            return Resolution([], True)
        b = scene.obj(anchor.targets[0])
        cands, amb = _candidates(scene, flt, {b.id})
        if not cands:
            return Resolution([], amb)
        bx, by = position(scene, b, frame)
        d = sorted((float(np.hypot(o.x[frame] - bx, o.y[frame] - by)), o.id) for o in cands)
        if len(d) > 1 and d[1][0] - d[0][0] <= REL_MARGIN * min(scene.width, scene.height):
            amb = True
        return Resolution([d[0][1]], amb)
    raise ValueError(f"unknown expression kind {kind!r}")


def objects_in(expr: Expr) -> list[Expr]:
    """Every sub-expression (the expression itself, anchors, ...), for split checks."""
    out = [expr]
    if "anchor" in expr:
        out += objects_in(expr["anchor"])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Text


def noun_phrase(flt: dict[str, str], rng: np.random.Generator | None = None, plural: bool = False) -> str:
    words = []
    for k in ("size", "color", "texture"):
        if k in flt:
            words.append("plain" if flt[k] == "solid" else flt[k])
    if "shape" in flt:
        noun = flt["shape"]
    else:
        noun = "object" if rng is None or rng.random() < 0.5 else "shape"
    if plural:
        noun = noun + ("es" if noun.endswith(("s", "x")) else "s")
    return " ".join(words + [noun])


def realize(expr: Expr, rng: np.random.Generator) -> str:
    """One paraphrase of an expression as a definite noun phrase ("the small red star")."""
    kind = expr["kind"]
    flt = expr.get("filter", {})
    np_ = noun_phrase(flt, rng)
    if kind == "attr":
        return f"the {np_}"
    if kind == "relation":
        word = vocab.RELATION_WORDS[expr["rel"]]
        anchor = realize(expr["anchor"], rng)
        tmpl = ("the {n} {w} {a}", "the {n} that is {w} {a}", "the {n} located {w} {a}")
        return str(rng.choice(tmpl)).format(n=np_, w=word, a=anchor)
    if kind == "ordinal":
        rank, axis = int(expr["rank"]), expr["axis"]
        if rank == 1 and rng.random() < 0.5:
            return f"the {EXTREME_WORDS[axis]} {np_}"
        return f"the {ORDINALS[rank - 1]} {np_} {AXIS_WORDS[axis]}"
    if kind == "motion":
        return f"the {np_} {rng.choice(MOTION_PHRASES[expr['motion']])}"
    if kind == "most_corners":
        return str(rng.choice(("the {n} with the most corners", "the {n} that has the most corners",
                               "the {n} with the largest number of corners"))).format(n=np_)
    if kind == "extreme_size":
        return f"the {expr['which']} {np_}"
    if kind == "farthest_traveled":
        return str(rng.choice(("the {n} that travels the longest distance", "the {n} that covers the most ground",
                               "the fastest-moving {n}"))).format(n=np_)
    if kind == "same_color":
        return str(rng.choice(("the {n} that has the same color as {a}", "the {n} colored like {a}",
                               "the {n} sharing its color with {a}"))).format(n=np_, a=realize(expr["anchor"], rng))
    if kind == "same_shape":
        return str(rng.choice(("the other {n} with the same shape as {a}", "the other {n} shaped like {a}"))).format(
            n=np_, a=realize(expr["anchor"], rng))
    if kind == "closest":
        return str(rng.choice(("the {n} closest to {a}", "the {n} nearest to {a}"))).format(
            n=np_, a=realize(expr["anchor"], rng))
    if kind == "all":
        return f"all {noun_phrase(flt, rng, plural=True)}"
    raise ValueError(kind)


def describe_object(o: Obj, frame: int = 0) -> str:
    """Full description used in answers: "a small red striped star"; attributes that change during a clip are
    told as a change ("a small heart that changes from blue to cyan") so the answer is true on every frame."""
    flt = {"size": o.size, "color": o.color_at(frame), "shape": o.shape}
    if o.texture != "solid":
        flt["texture"] = o.texture
    tail = ""
    if o.color_change is not None:
        del flt["color"]
        tail = f" that changes from {o.color} to {o.color_change[1]}"
    elif o.size_change is not None:
        del flt["size"]
        verb = "grows" if vocab.SIZES.index(o.size_change) > vocab.SIZES.index(o.size) else "shrinks"
        tail = f" that {verb} from {o.size} to {o.size_change}"
    np_ = noun_phrase(flt)
    return ("an " if np_[0] in "aeiou" else "a ") + np_ + tail


def short_name(o: Obj, frame: int = 0) -> str:
    """"the red star" style name for answers that list objects."""
    return f"the {o.color_at(frame)} {o.shape}"


# ----------------------------------------------------------------------------------------------------------------
# Search for unambiguous expressions


def attribute_filters(o: Obj) -> list[dict[str, str]]:
    """Every non-empty subset of the object's attributes as a filter, smallest first."""
    vals = {"size": o.size, "color": o.color, "texture": o.texture, "shape": o.shape}
    return [{k: vals[k] for i, k in enumerate(ATTRS) if mask >> i & 1} for mask in _masks_by_size()]


@lru_cache(maxsize=1)
def _masks_by_size() -> tuple[int, ...]:
    return tuple(sorted(range(1, 16), key=lambda m: (m.bit_count(), m)))


def unique_attr_exprs(scene: Scene, o: Obj) -> list[Expr]:
    """Attribute-only expressions that denote exactly `o` (without borderline cases), shortest first."""
    out = []
    for flt in attribute_filters(o):
        e = {"kind": "attr", "filter": flt}
        r = resolve(e, scene)
        if r.unique and r.targets[0] == o.id:
            out.append(e)
    return out
