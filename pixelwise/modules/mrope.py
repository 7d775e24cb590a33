"""Qwen2.5-VL multimodal RoPE positions, with the rule of transformers 4.53.3 (what UniPixel was trained with).

Each token gets three position ids (temporal, height, width). Text tokens use the same value on all three axes;
the merged visual tokens of a video use (t * int(seconds_per_grid_step) * tokens_per_second, row, column) offset by
the start of the block. The two rules that differ from transformers 5.x and therefore live here:

* The text after a visual block starts at `max(all positions so far, over all three axes) + 1`. (5.x advances by
  max(grid_h, grid_w) only, which differs for videos with more than one temporal step.)
* Seconds per grid step are cast to an integer *before* multiplying (0.5 s/step puts every frame pair on the same
  temporal position in 4.53.3).

During decoding every new token sits at `cache_length + rope_delta` on all three axes, with
`rope_delta = max(all prompt positions) + 1 - prompt_length`.
"""

from __future__ import annotations

import torch


def mrope_position_ids(input_ids: torch.Tensor, video_grid_thw: torch.Tensor | None,
                       second_per_grid_ts: torch.Tensor | None, video_token_id: int, vision_start_token_id: int,
                       spatial_merge_size: int = 2, tokens_per_second: int = 2,
                       image_grid_thw: torch.Tensor | None = None, image_token_id: int | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids [L] (one unpadded sequence) -> (position_ids [3, L] int64, rope_delta [1] int64)."""
    ids = input_ids.reshape(-1).tolist()
    length = len(ids)
    video_grids = [] if video_grid_thw is None else [tuple(int(v) for v in g) for g in video_grid_thw.reshape(-1, 3)]
    image_grids = [] if image_grid_thw is None else [tuple(int(v) for v in g) for g in image_grid_thw.reshape(-1, 3)]
    spg = [] if second_per_grid_ts is None else [float(s) for s in second_per_grid_ts.reshape(-1)]

    chunks: list[torch.Tensor] = []
    next_pos = 0  # max over everything emitted so far + 1
    st = 0
    vi = ii = 0
    starts = [i for i, t in enumerate(ids[:-1]) if t == vision_start_token_id]
    for s in starts:
        tok = ids[s + 1]
        if tok == video_token_id and vi < len(video_grids):
            t, h, w = video_grids[vi]
            step = int(spg[vi]) if vi < len(spg) else 1  # 4.53.3 casts to int64 before multiplying
            vi += 1
        elif image_token_id is not None and tok == image_token_id and ii < len(image_grids):
            t, h, w = image_grids[ii]
            step = 0
            ii += 1
        else:
            continue
        ed = s + 1
        text_len = ed - st
        chunks.append(torch.arange(text_len, dtype=torch.int64).view(1, -1).expand(3, -1) + next_pos)
        lt, lh, lw = t, h // spatial_merge_size, w // spatial_merge_size
        t_index = (torch.arange(lt, dtype=torch.int64).view(-1, 1).expand(-1, lh * lw) * step * tokens_per_second)
        t_index = t_index.flatten()
        h_index = torch.arange(lh, dtype=torch.int64).view(1, -1, 1).expand(lt, -1, lw).flatten()
        w_index = torch.arange(lw, dtype=torch.int64).view(1, 1, -1).expand(lt, lh, -1).flatten()
        chunks.append(torch.stack([t_index, h_index, w_index]) + text_len + next_pos)
        next_pos = int(torch.cat(chunks, 1).max()) + 1
        st = ed + lt * lh * lw
    if st < length:
        chunks.append(torch.arange(length - st, dtype=torch.int64).view(1, -1).expand(3, -1) + next_pos)
    positions = torch.cat(chunks, 1) if chunks else torch.zeros(3, 0, dtype=torch.int64)
    delta = int(positions.max()) + 1 - length if length else 0
    return positions, torch.tensor([delta], dtype=torch.int64)


def decode_position_ids(cache_length: int, rope_delta: int, num_new: int = 1) -> torch.Tensor:
    """Positions [3, 1, num_new] of tokens appended after `cache_length` cached ones."""
    pos = torch.arange(cache_length, cache_length + num_new, dtype=torch.int64) + int(rope_delta)
    return pos.view(1, 1, -1).expand(3, 1, -1)
