"""A learned upsampler of SAM2's mask logits (pixelwise's tiny models only, `Sam2Config.mask_refiner`).

SAM2 decodes masks at a quarter of its input size and upsamples them bilinearly. For an official model at 1024 px
that is 256 x 256, finer than most objects; for pixelwise's tiny model at 128 px it is 32 x 32, and even a perfect
32 x 32 mask upsampled that way reaches IoU 0.88 on PixelWorld test targets (0.84 on objects of 100-300 pixels, 83 %
of targets at IoU >= 0.8; docs/models/unipixel-tiny.md, session 14). The refiner reads the frame's own pixels beside
the upsampled logits and corrects them: a few dilated convolutions at the input resolution that see about 19 pixels
around each one, enough to move an outline to the colour edge it belongs to. Its last layer starts at zero, so a
model that grows it outputs exactly what it did before training it. Its output is what the caller sees; SAM2's
memory keeps reading the unrefined masks, as it was trained to.
"""

from __future__ import annotations

import torch
from torch import nn

from pixelwise.modules.sam2.common import resize_logits

LOGIT_SCALE = 10.0  # logits enter clamped to +-2 after this division (SAM2's no-object logits are -1024)


class MaskRefiner(nn.Module):
    """Low-res mask logits [O, 1, h, w] + the frame [O or 1, 3, S, S] -> a correction [O, 1, S, S] to add to the
    logits upsampled bilinearly (`Sam2Model.output_logits` adds it at the size asked for)."""

    def __init__(self, channels: int):
        super().__init__()
        c = int(channels)
        layers: list[nn.Module] = [nn.Conv2d(3 + 2, c, 3, padding=1), nn.GELU()]
        for dilation in (1, 2, 4):
            layers += [nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, lowres: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        size = tuple(pixels.shape[-2:])
        up = resize_logits(lowres, size)
        frame = pixels.to(up.dtype).expand(up.shape[0], -1, -1, -1)
        x = torch.cat([frame, (up / LOGIT_SCALE).clamp(-2.0, 2.0), torch.sigmoid(up)], 1)
        return self.out(self.body(x))
