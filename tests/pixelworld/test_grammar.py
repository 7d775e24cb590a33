"""The resolver on hand-built scenes: attributes, relations, ordinals, reasoning kinds, motion facts, ambiguity."""

from __future__ import annotations

import numpy as np
import pytest

from pixelwise.data.pixelworld import grammar
from pixelwise.data.pixelworld.grammar import resolve
from pixelwise.data.pixelworld.scene import Obj, Scene


def obj(i, shape, color, x, y, size="medium", texture="solid", T=1, xs=None, ys=None, r=10.0, **kw):
    X = np.asarray(xs, float) if xs is not None else np.full(T, float(x))
    Y = np.asarray(ys, float) if ys is not None else np.full(T, float(y))
    return Obj(i, shape, color, size, texture, i, X, Y, np.full(len(X), r), **kw)


def scene(objs, T=1):
    return Scene(128, 128, T, {"kind": "flat", "color": [128] * 3, "seed": 0}, objs)


@pytest.fixture
def sc():
    return scene([
        obj(0, "circle", "red", 20, 20, size="small"),
        obj(1, "circle", "blue", 100, 20),
        obj(2, "square", "blue", 60, 60, size="large", texture="striped"),
        obj(3, "star", "red", 60, 110),
    ])


def test_attribute_filters(sc):
    assert resolve({"kind": "attr", "filter": {"shape": "circle"}}, sc).targets == [0, 1]
    r = resolve({"kind": "attr", "filter": {"shape": "circle", "color": "red"}}, sc)
    assert r.unique and r.targets == [0]
    assert resolve({"kind": "all", "filter": {"color": "green"}}, sc).targets == []


def test_relations(sc):
    anchor = {"kind": "attr", "filter": {"shape": "square"}}
    left = {"kind": "relation", "filter": {"shape": "circle"}, "rel": "left_of", "anchor": anchor}
    assert resolve(left, sc).targets == [0]
    below = {"kind": "relation", "filter": {}, "rel": "below", "anchor": anchor}
    assert resolve(below, sc).targets == [3]
    # the star is level with the square horizontally -> "left of the square" is too close to call for it
    any_left = {"kind": "relation", "filter": {}, "rel": "left_of", "anchor": anchor}
    assert resolve(any_left, sc).ambiguous


def test_relation_with_ambiguous_anchor_does_not_resolve(sc):
    e = {"kind": "relation", "filter": {}, "rel": "below", "anchor": {"kind": "attr", "filter": {"shape": "circle"}}}
    assert not resolve(e, sc).unique


def test_ordinals(sc):
    e = {"kind": "ordinal", "filter": {"color": "red"}, "axis": "top", "rank": 2}
    assert resolve(e, sc).targets == [3]
    e = {"kind": "ordinal", "filter": {"shape": "circle"}, "axis": "right", "rank": 1}
    assert resolve(e, sc).unique and resolve(e, sc).targets == [1]
    # circles are level vertically: "the topmost circle" is ambiguous
    e = {"kind": "ordinal", "filter": {"shape": "circle"}, "axis": "top", "rank": 1}
    assert resolve(e, sc).ambiguous


def test_reasoning_kinds(sc):
    assert resolve({"kind": "most_corners", "filter": {}}, sc).targets == [3]  # star: 10 corners
    assert resolve({"kind": "extreme_size", "filter": {}, "which": "largest"}, sc).targets == [2]
    assert resolve({"kind": "extreme_size", "filter": {}, "which": "smallest"}, sc).targets == [0]
    same = {"kind": "same_color", "filter": {}, "anchor": {"kind": "attr", "filter": {"shape": "star"}}}
    assert resolve(same, sc).targets == [0]
    shape = {"kind": "same_shape", "filter": {}, "anchor": {"kind": "attr", "filter": {"color": "red",
                                                                                        "shape": "circle"}}}
    assert resolve(shape, sc).targets == [1]
    close = {"kind": "closest", "filter": {}, "anchor": {"kind": "attr", "filter": {"shape": "star"}}}
    assert resolve(close, sc).targets == [2]


def test_color_change_makes_color_words_ambiguous_but_not_others():
    T = 10
    sc = scene([obj(0, "circle", "red", 30, 30, T=T, color_change=(5, "blue")), obj(1, "square", "red", 90, 90, T=T)],
               T=T)
    assert resolve({"kind": "attr", "filter": {"color": "red"}}, sc).ambiguous
    assert resolve({"kind": "attr", "filter": {"color": "green"}}, sc).targets == []
    assert not resolve({"kind": "attr", "filter": {"color": "green"}}, sc).ambiguous
    assert resolve({"kind": "attr", "filter": {"shape": "square"}}, sc).unique


def _facts(xs, ys, T=32, **kw):
    sc = scene([obj(0, "circle", "red", 0, 0, T=T, xs=xs, ys=ys, **kw)], T=T)
    return grammar.motion_facts(sc)[0]


def test_motion_facts_from_trajectories():
    T = 32
    t = np.arange(T) / (T - 1)
    f = _facts(100 - 60 * t, np.full(T, 64))
    assert f["moves_left"] is True and f["moves_right"] is False and f["static"] is False
    assert f["stops"] is False and f["accelerates"] is False and f["turns"] is False
    f = _facts(np.full(T, 64), np.full(T, 64))
    assert f["static"] is True and f["moves_left"] is False
    f = _facts(20 + 60 * np.minimum(t / 0.5, 1), np.full(T, 64))
    assert f["stops"] is True and f["moves_right"] is True
    f = _facts(20 + 80 * t**2.2, np.full(T, 64))
    assert f["accelerates"] is True
    # right then down
    xs = 20 + 40 * np.minimum(t / 0.5, 1)
    ys = 20 + 40 * np.clip((t - 0.5) / 0.5, 0, 1)
    f = _facts(xs, ys)
    assert f["turns"] is True and f["bounces"] is False and f["moves_right"] is None
    # bouncing back from the right edge
    xs = np.where(t < 0.5, 40 + 160 * t, 120 - 160 * (t - 0.5))
    f = _facts(xs, np.full(T, 64))
    assert f["bounces"] is True
    # entering from the left after frame 10
    xs = np.clip(-20 + 80 * (t - 0.3) / 0.4, -20, 60)
    f = _facts(xs, np.full(T, 64))
    assert f["enters"] is True and f["leaves"] is False and f["moves_right"] is True


def test_appears_last_needs_a_clear_winner():
    T = 32
    t = np.arange(T) / (T - 1)
    still = obj(0, "square", "blue", 64, 30, T=T)
    late = obj(1, "circle", "red", 0, 0, T=T, xs=np.clip(-20 + 80 * (t - 0.5) / 0.3, -20, 60), ys=np.full(T, 90))
    sc = scene([still, late], T=T)
    r = resolve({"kind": "motion", "filter": {}, "motion": "appears_last"}, sc)
    assert r.unique and r.targets == [1]


def test_realize_produces_the_attribute_words(sc):
    rng = np.random.default_rng(0)
    e = {"kind": "relation", "filter": {"shape": "circle"}, "rel": "left_of",
         "anchor": {"kind": "attr", "filter": {"color": "blue", "texture": "striped"}}}
    text = grammar.realize(e, rng)
    assert "circle" in text and "left of" in text and "blue striped" in text
    assert grammar.realize({"kind": "all", "filter": {"shape": "cross"}}, rng) == "all crosses"
    assert grammar.describe_object(sc.obj(2)) == "a large blue striped square"


@pytest.mark.parametrize("T", [16, 32, 320])
def test_derived_motion_facts_agree_with_the_generated_motion_for_any_clip_length(T):
    from pixelwise.data.pixelworld.scene import SceneConfig, sample_scene

    expect = {"static": "static", "stopping": "stops", "accelerating": "accelerates", "turning": "turns",
              "bouncing": "bounces", "entering": "enters", "leaving": "leaves"}
    exclusive = ("stops", "accelerates", "turns", "bounces")
    for seed in range(40):
        sc = sample_scene(np.random.default_rng(seed), SceneConfig(num_frames=T))
        facts = grammar.motion_facts(sc)
        for o in sc.objects:
            f = facts[o.id]
            if o.motion in expect:
                assert f[expect[o.motion]] is True, (seed, o.motion)
            if o.motion == "linear":
                assert sum(f[k] is True for k in ("moves_left", "moves_right", "moves_up", "moves_down")) == 1
                assert not any(f[k] for k in exclusive), (seed, f)
            if o.motion in ("turning", "bouncing"):
                assert f["stops"] is not True and f["accelerates"] is not True


def test_farthest_traveled_needs_a_clear_winner():
    T = 16
    t = np.arange(T) / (T - 1)
    a = obj(0, "circle", "red", 0, 0, T=T, xs=20 + 80 * t, ys=np.full(T, 30))
    b = obj(1, "square", "blue", 0, 0, T=T, xs=20 + 30 * t, ys=np.full(T, 90))
    e = {"kind": "farthest_traveled", "filter": {}}
    r = resolve(e, scene([a, b], T=T))
    assert r.unique and r.targets == [0]
    b.x = 20 + 70 * t  # 70 vs 80 px: too close to call
    assert resolve(e, scene([a, b], T=T)).ambiguous
