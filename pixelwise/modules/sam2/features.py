"""Per-frame image features of SAM2, computed once per clip and shared by every tracked object.

`Sam2Features` holds the features of T frames batched along dim 0 and behaves like a sequence of
`Sam2FrameFeatures` (one frame each, batch dim 1), which is what `Sam2Model.track` consumes frame by frame. A streaming
caller can instead hand `track` a callable `t -> Sam2FrameFeatures` that encodes frame t on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Sam2FrameFeatures:
    """Features of one frame (batch dim 1; `track` broadcasts them over the objects without copying)."""

    embed: torch.Tensor  # [1, C, h, w]   stride-16 FPN level (the "image embedding"), before any memory
    high_res_s0: torch.Tensor  # [1, C/8, 4h, 4w]  stride-4 FPN level after the decoder's conv_s0
    high_res_s1: torch.Tensor  # [1, C/4, 2h, 2w]  stride-8 FPN level after the decoder's conv_s1
    pos: torch.Tensor  # [1, C, h, w]   sine positional encoding of the stride-16 level
    pixels: torch.Tensor | None = None  # [1, 3, S, S]  the frame itself, as encoded (SAM2-normalised)
    # what a model derived from this frame once and reads again, by its own key (e.g. pixelwise's tiny UniPixel keeps
    # the proposals of its grid cells here, `UniPixelModel.cell_proposals`); not part of the features' value
    proposals: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Sam2Features:
    """Features of T frames: the same fields as `Sam2FrameFeatures` with T in dim 0 (`pos` stays `[1, ...]`)."""

    embed: torch.Tensor
    high_res_s0: torch.Tensor
    high_res_s1: torch.Tensor
    pos: torch.Tensor
    pixels: torch.Tensor | None = None
    _frames: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # `__getitem__`'s, by index

    def __len__(self) -> int:
        return self.embed.shape[0]

    def span(self, start: int, stop: int) -> Sam2Features:
        """Frames start..stop-1 (e.g. one query's part of frames from several queries encoded together)."""
        s = slice(start, stop)
        return Sam2Features(self.embed[s], self.high_res_s0[s], self.high_res_s1[s], self.pos,
                            None if self.pixels is None else self.pixels[s])

    def __getitem__(self, t: int) -> Sam2FrameFeatures:
        """Frame t, the same object each time it is asked for (what a model keeps on it, `proposals`, is reused)."""
        if not -len(self) <= t < len(self):
            raise IndexError(f"frame {t} out of range for {len(self)} frames")
        t = t % len(self)
        if t not in self._frames:
            s = slice(t, t + 1)
            self._frames[t] = Sam2FrameFeatures(self.embed[s], self.high_res_s0[s], self.high_res_s1[s], self.pos,
                                                None if self.pixels is None else self.pixels[s])
        return self._frames[t]


FrameSource = Sam2Features | Sequence[Sam2FrameFeatures] | Callable[[int], Sam2FrameFeatures]
"""What `Sam2Model.track` accepts: precomputed features (indexable) or a lazy per-frame encoder."""
