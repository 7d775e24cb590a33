"""The transformers-4.53.3 MRoPE position rule (differs from 5.x after videos with more than one time step)."""

from __future__ import annotations

import torch

from pixelwise.modules.mrope import decode_position_ids, mrope_position_ids

VS, VP = 5, 6


def _ids(n_text_before: int, n_visual: int, n_text_after: int) -> torch.Tensor:
    return torch.tensor([1] * n_text_before + [VS] + [VP] * n_visual + [2] * n_text_after)


def test_video_block_then_text_starts_after_max_of_all_axes():
    grid = torch.tensor([[3, 4, 4]])  # 3 time steps, 2x2 merged tokens per step
    ids = _ids(2, 12, 3)
    pos, delta = mrope_position_ids(ids, grid, torch.tensor([1.0]), VP, VS)
    assert pos.shape == (3, len(ids))
    assert pos[:, :3].tolist() == [[0, 1, 2]] * 3
    vis = pos[:, 3:15]
    assert vis[0].tolist() == [3] * 4 + [5] * 4 + [7] * 4  # t * int(spg) * tokens_per_second (2) + 3
    assert vis[1].tolist() == [3, 3, 4, 4] * 3 and vis[2].tolist() == [3, 4, 3, 4] * 3
    assert pos[:, 15].tolist() == [8, 8, 8]  # max over all axes (7) + 1, not start + max(h, w)
    assert int(delta) == int(pos.max()) + 1 - len(ids)
    assert decode_position_ids(len(ids), int(delta)).flatten().tolist() == [int(pos.max()) + 1] * 3


def test_seconds_per_step_cast_to_int_before_multiplying():
    grid = torch.tensor([[2, 2, 2]])
    pos, _ = mrope_position_ids(_ids(0, 2, 1), grid, torch.tensor([0.5]), VP, VS)
    assert pos[0, 1:3].tolist() == [1, 1]  # int(0.5) == 0: both steps on one temporal position


def test_text_only():
    pos, delta = mrope_position_ids(torch.tensor([1, 2, 3]), None, None, VP, VS)
    assert pos.tolist() == [[0, 1, 2]] * 3 and int(delta) == 0
