"""Property tests (hypothesis): mask/RLE round trips, metric invariants, prompt parsing and validation, result JSON
under mutation. Every input either gives a well-defined value or a typed PixelwiseError — never another exception."""

from __future__ import annotations

import json
import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pixelwise.core import masks as M
from pixelwise.core.errors import FormatError, MaskError, PromptError
from pixelwise.core.prompts import Box, MaskPrompt, Point, parse_box, parse_point
from pixelwise.core.results import Result, SegObject
from pixelwise.eval import metrics as EM
from tools.robustness.corpus import mutate_json
from tests.reliability.conftest import SCALE

shapes = st.tuples(st.integers(0, 14), st.integers(0, 14))
masks = shapes.flatmap(lambda s: arrays(bool, s))
nonempty_shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


def pair(shape_strategy=nonempty_shapes, frames=None):
    def build(s):
        shape = s if frames is None else (frames, *s)
        return st.tuples(arrays(bool, shape), arrays(bool, shape))
    return shape_strategy.flatmap(build)


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


@settings(max_examples=60 * SCALE, deadline=None)
@given(masks)
def test_rle_round_trip(mask):
    rle = M.rle_encode(mask)
    assert rle["size"] == list(mask.shape)
    back = M.rle_decode(json.loads(json.dumps(rle)), expected_size=mask.shape)
    assert back.dtype == bool and np.array_equal(back, mask)
    assert M.rle_area(rle) == np.count_nonzero(mask)
    unc = {"size": list(mask.shape), "counts": uncompressed_counts(mask)}
    assert np.array_equal(M.rle_decode(unc), mask)
    if mask.size:
        many = M.rle_encode_many(np.stack([mask, ~mask]))
        assert many[0] == rle and np.array_equal(M.rle_decode(many[1]), ~mask)


junk_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
rle_counts = st.text(alphabet=[chr(c) for c in range(40, 120)], max_size=30) | st.lists(
    st.integers(-3, 60), max_size=12) | junk_values
rle_sizes = st.lists(st.integers(-2, 12), min_size=0, max_size=3) | junk_values
junk_rles = st.fixed_dictionaries({"size": rle_sizes, "counts": rle_counts}) | junk_values


@settings(max_examples=150 * SCALE, deadline=None)
@given(junk_rles)
def test_rle_decode_junk(rle):
    try:
        m = M.rle_decode(rle)
    except MaskError:
        return
    assert m.dtype == bool and list(m.shape) == [int(v) for v in rle["size"]]
    assert np.array_equal(M.rle_decode(M.rle_encode(m)), m)


@settings(max_examples=60 * SCALE, deadline=None)
@given(pair())
def test_iou_invariants(ab):
    a, b = ab
    iou = M.mask_iou(a, b)
    assert iou == M.mask_iou(b, a) and 0.0 <= iou <= 1.0
    assert M.mask_iou(a, a) == 1.0
    assert math.isclose(float(M.pairwise_iou(a[None], b[None])[0, 0]), iou, rel_tol=1e-6)
    empty = np.zeros_like(a)
    assert M.mask_iou(empty, empty) == 1.0
    if a.any():
        assert M.mask_iou(a, empty) == 0.0
    box_a, box_b = M.mask_to_box(a), M.mask_to_box(b)
    if box_a and box_b:
        bi = EM.box_iou(box_a, box_b)
        assert bi == EM.box_iou(box_b, box_a) and 0.0 <= bi <= 1.0


@settings(max_examples=40 * SCALE, deadline=None)
@given(pair(st.tuples(st.integers(1, 10), st.integers(1, 10)), frames=3))
def test_jf_invariants(ab):
    p, g = ab
    j = EM.j_scores(p, g)
    assert np.array_equal(j, EM.j_scores(g, p)) and np.all((0 <= j) & (j <= 1))
    jf = EM.jf_video(p, g)
    assert 0.0 <= jf["J"] <= 1.0 and 0.0 <= jf["F"] <= 1.0 and math.isclose(jf["J&F"], (jf["J"] + jf["F"]) / 2)
    assert np.allclose(jf["F_frames"], EM.jf_video(g, p)["F_frames"])  # F swaps precision and recall
    same = EM.jf_video(g, g)
    assert same["J"] == 1.0 and same["F"] == 1.0
    empty = np.zeros_like(g)
    assert EM.jf_video(empty, empty)["J&F"] == 1.0
    for t in range(len(g)):  # a frame with a target and an empty prediction scores 0
        if g[t].any():
            assert EM.j_scores(empty[t:t + 1], g[t:t + 1])[0] == 0.0
    i, u = EM.intersection_union(p, g)
    assert 0 <= i <= u == np.count_nonzero(p | g)


num_text = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                     st.text(max_size=4))


@settings(max_examples=200 * SCALE, deadline=None)
@given(st.one_of(st.text(max_size=40),
                 st.builds(lambda xs, f: ",".join(xs) + f, st.lists(num_text, max_size=5),
                           st.sampled_from(["", "@0", "@3", "@-1", "@x", "@1.5", "@"]))))
def test_prompt_parsing_junk(text):
    for parse, n in ((parse_point, 2), (parse_box, 4)):
        try:
            p = parse(text)
        except PromptError as e:
            assert str(e)
            continue
        values = [p.x, p.y] if n == 2 else list(p.xyxy)
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)  # NaN/inf never parse
        assert isinstance(p.frame, int) and p.frame >= 0


coords = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-50, 50), st.text(max_size=2),
                   st.none(), st.booleans())
frames = st.one_of(st.integers(-3, 6), st.floats(allow_nan=True), st.none(), st.text(max_size=1))


@settings(max_examples=150 * SCALE, deadline=None)
@given(st.one_of(st.builds(Point, coords, coords, frames),
                 st.builds(Box, coords, coords, coords, coords, frames),
                 st.builds(MaskPrompt, st.one_of(arrays(bool, st.tuples(st.integers(0, 6), st.integers(0, 6))),
                                                 arrays(np.uint8, (4, 5)), st.lists(st.booleans(), max_size=3)),
                           frames)),
       st.integers(1, 6), st.integers(1, 6), st.integers(1, 4))
def test_prompt_validation(prompt, h, w, t):
    """A prompt outside the frame, negative, NaN, on a frame past the end, or of the wrong type: PromptError."""
    try:
        prompt.validate(h, w, t)
    except PromptError as e:
        assert type(prompt).__name__ in str(e) or "point" in str(e) or "box" in str(e) or "mask" in str(e)
        return
    assert isinstance(prompt.frame, (int, np.integer)) and 0 <= prompt.frame < t
    if isinstance(prompt, Point):
        assert 0 <= prompt.x < w and 0 <= prompt.y < h
    elif isinstance(prompt, Box):
        assert 0 <= prompt.x1 < prompt.x2 <= w and 0 <= prompt.y1 < prompt.y2 <= h
    else:
        assert np.asarray(prompt.mask).shape == (h, w) and np.asarray(prompt.mask).any()


def _good_result() -> dict:
    m = np.zeros((3, 6, 8), bool)
    m[:, 1:4, 2:6] = True
    m[1] = False
    return Result("the box [0]", [SegObject(0, m, (8, 11), "box", 0.5, (2, 1, 6, 4))], [0, 2, 4], (6, 8)).to_json()


@settings(max_examples=80 * SCALE, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_result_json_mutations(seed, n):
    rng = random.Random(seed)
    data = _good_result()
    for _ in range(n):
        data, _ = mutate_json(data, rng)
    try:
        r = Result.from_json(data, source="result.json") if isinstance(data, dict) else None
    except (FormatError, MaskError) as e:
        assert "result.json" in str(e)
        return
    if r is not None:  # what loads is well-formed and survives a round trip
        again = Result.from_json(json.loads(json.dumps(r.to_json())))
        assert again.frame_indices == r.frame_indices and again.size == r.size
        for a, b in zip(again.objects, r.objects):
            assert np.array_equal(a.masks, b.masks)
