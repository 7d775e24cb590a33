"""Property test: any seed gives samples the checker accepts (no ambiguous expression, exact masks, valid options)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelwise.data.pixelworld import tasks
from tests.pixelworld.check import check_sample
from pixelwise.data.pixelworld.generate import GenConfig, generate_in_memory


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), index=st.integers(0, 10_000), split=st.sampled_from(["train", "holdout"]))
def test_any_image_sample_is_consistent(seed, index, split):
    cfg = GenConfig(split=split, num=index + 1, seed=seed)
    assert cfg.task_list() == tasks.IMAGE_TASKS
    (sample,) = generate_in_memory(cfg, indices=[index])
    assert check_sample(sample) == []


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), index=st.integers(0, 10_000))
def test_any_clip_sample_is_consistent(seed, index):
    (sample,) = generate_in_memory(GenConfig(split="test", num=index + 1, seed=seed, video=True, num_frames=12),
                                   indices=[index])
    assert check_sample(sample) == []
