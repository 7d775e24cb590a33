"""Generation: determinism, sample consistency (re-resolved expressions, re-rendered masks), hold-out rules."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pixelwise.core.errors import ConfigError
from pixelwise.data.pixelworld import native, splits, tasks
from tests.pixelworld.check import check_sample
from pixelwise.data.pixelworld.generate import GenConfig, generate, generate_in_memory


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_output_for_any_worker_count(tmp_path):
    cfg = GenConfig(split="train", num=12, seed=3, video=True, num_frames=8)
    generate(tmp_path / "a", cfg, workers=1)
    generate(tmp_path / "b", cfg, workers=2)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da == db
    assert any(k.endswith(".mp4") for k in da)


def test_image_output_is_deterministic_and_seed_dependent(tmp_path):
    generate(tmp_path / "a", GenConfig(num=14, seed=1), workers=1)
    generate(tmp_path / "b", GenConfig(num=14, seed=1), workers=1)
    generate(tmp_path / "c", GenConfig(num=14, seed=2), workers=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    a, c = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert a["samples.jsonl"] != c["samples.jsonl"]
    assert sum(a[k] != c.get(k) for k in a if k.startswith("media/")) == len([k for k in a if k.startswith("media/")])


def test_a_sample_does_not_depend_on_the_others():
    full = generate_in_memory(GenConfig(num=10, seed=5))
    alone = generate_in_memory(GenConfig(num=10, seed=5), indices=[7])
    assert json.dumps(full[7]) == json.dumps(alone[0])


def test_splits_differ():
    a = generate_in_memory(GenConfig(split="val", num=3, seed=0))
    b = generate_in_memory(GenConfig(split="test", num=3, seed=0))
    assert [s["scene"] for s in a] != [s["scene"] for s in b]


@pytest.mark.parametrize("split", ["train", "holdout"])
def test_every_image_sample_is_consistent_with_its_scene(split):
    samples = generate_in_memory(GenConfig(split=split, num=63, seed=11))
    assert {s["task"] for s in samples} == set(tasks.IMAGE_TASKS)
    errors = [e for s in samples for e in check_sample(s)]
    assert errors == []


def test_every_video_sample_is_consistent_with_its_scene():
    samples = generate_in_memory(GenConfig(split="test", num=28, seed=11, video=True, num_frames=16))
    assert {s["task"] for s in samples} == set(tasks.VIDEO_TASKS)
    errors = [e for s in samples for e in check_sample(s)]
    assert errors == []


def test_checker_catches_a_wrong_target():
    s = generate_in_memory(GenConfig(num=1, seed=0, tasks=("referring",)))[0]
    others = [o["id"] for o in s["scene"]["objects"] if o["id"] != s["targets"][0]["obj_id"]]
    s["targets"][0]["obj_id"] = others[0]
    assert check_sample(s)


def test_checker_catches_an_ambiguous_expression():
    s = generate_in_memory(GenConfig(num=1, seed=0, tasks=("referring",)))[0]
    s["expression"] = {"kind": "attr", "filter": {}}
    assert any("resolves" in e or "ambiguous" in e for e in check_sample(s))


def test_holdout_combinations_never_appear_outside_the_holdout_split():
    for split in ("train", "val"):
        samples = generate_in_memory(GenConfig(split=split, num=140, seed=21))
        for s in samples:
            for o in s["scene"]["objects"] + s.get("target_scene", {"objects": []})["objects"]:
                assert (o["color"], o["shape"]) not in splits.HOLDOUT_COMBOS
        rel_pairs = set()
        for s in samples:
            e = s.get("expression") or {}
            if e.get("kind") == "relation":
                from pixelwise.data.pixelworld.grammar import resolve
                from pixelwise.data.pixelworld.scene import Scene

                anchor = resolve(e["anchor"], Scene.from_json(s["scene"])).targets[0]
                shape = next(o["shape"] for o in s["scene"]["objects"] if o["id"] == anchor)
                rel_pairs.add((e["rel"], shape))
        assert rel_pairs, "no relation expressions generated"
        assert not rel_pairs & splits.HOLDOUT_RELATIONS


def test_holdout_split_is_made_of_holdout_combinations():
    samples = generate_in_memory(GenConfig(split="holdout", num=70, seed=21))
    target_combo = 0
    for s in samples:
        objs = {o["id"]: o for o in s["scene"]["objects"]}
        assert any((o["color"], o["shape"]) in splits.HOLDOUT_COMBOS for o in objs.values())
        if any((objs[t["obj_id"]]["color"], objs[t["obj_id"]]["shape"]) in splits.HOLDOUT_COMBOS
               for t in s["targets"] if t["obj_id"] in objs):
            target_combo += 1
    assert target_combo > 0.5 * len(samples)


def test_task_mix_is_round_robin_and_restricted_by_tasks():
    s = generate_in_memory(GenConfig(num=6, seed=0, tasks=("region", "detection")))
    assert [x["task"] for x in s] == ["region", "detection"] * 3
    with pytest.raises(ConfigError):
        GenConfig(tasks=("pixelqa",)).validate()  # a video-only task on images
    with pytest.raises(ConfigError):
        GenConfig(tasks=("nope",)).validate()
    with pytest.raises(ConfigError):
        GenConfig(split="dev").validate()


def test_multi_target_includes_zero_target_questions():
    s = generate_in_memory(GenConfig(num=40, seed=4, tasks=("multi_target",)))
    counts = collections.Counter(len(x["targets"]) for x in s)
    assert counts[0] > 0 and sum(v for k, v in counts.items() if k >= 2) > 0
    assert 1 not in counts
    zero = next(x for x in s if not x["targets"])
    assert "no " in zero["answer"].lower() and "[SEG]" not in zero["answer"]


def test_native_files_decode_to_the_sample_masks(image_dir, video_dir):
    for root in (image_dir, video_dir):
        meta = native.load_meta(root)
        samples = native.load_samples(root)
        assert meta["num"] == len(samples)
        for s in samples[:8]:
            frames = native.read_media(root, s["media"])
            assert frames.shape == (s["num_frames"], s["height"], s["width"], 3)
            masks = native.target_masks(s)
            assert masks.shape[:2] == (len(s["targets"]), s["num_frames"])
            from pixelwise.data.pixelworld.render import render
            from pixelwise.data.pixelworld.scene import Scene

            ref, _, _ = render(Scene.from_json(s["scene"]))
            err = np.abs(frames.astype(int) - ref.astype(int)).mean()
            assert err < (0.01 if s["num_frames"] == 1 else 4.0)  # PNG lossless; H.264 at crf 16 close


def test_editing_target_media_shows_the_edit(image_dir):
    samples = [s for s in native.load_samples(image_dir) if s["task"] == "editing"]
    assert samples
    for s in samples:
        src = native.read_media(image_dir, s["media"])
        dst = native.read_media(image_dir, s["target_media"])
        assert src.shape == dst.shape and not np.array_equal(src, dst)


@pytest.mark.slow
def test_long_split_has_long_consistent_clips():
    s = generate_in_memory(GenConfig(split="long", num=2, seed=0))
    assert all(x["num_frames"] == splits.LONG_FRAMES for x in s)
    assert [e for x in s for e in check_sample(x)] == []


@pytest.mark.parametrize(("resolution", "frames"), [(160, 8), (96, 64)])
def test_other_resolutions_and_clip_lengths(resolution, frames):
    s = generate_in_memory(GenConfig(num=3, seed=2, video=True, resolution=resolution, num_frames=frames))
    for x in s:
        assert (x["height"], x["width"], x["num_frames"]) == (resolution, resolution, frames)
        assert check_sample(x) == []
    img = generate_in_memory(GenConfig(num=2, seed=2, resolution=resolution))
    assert all(check_sample(x) == [] and x["height"] == resolution for x in img)


def test_detection_questions_name_the_shape_in_the_right_number():
    s = generate_in_memory(GenConfig(num=30, seed=0, tasks=("detection",)))
    every = [x for x in s if x["question"].startswith("Detect every ")]
    assert every  # one of the three templates
    for x in every:  # "Detect every star.", not "Detect every stars."
        assert x["question"] == f"Detect every {x['expression']['filter']['shape']}."
