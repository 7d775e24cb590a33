"""`Clip`: decoded frames in memory. An image is a clip of one frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixelwise.core.errors import MediaError


@dataclass
class Clip:
    """Frames (uint8 RGB `[T, H, W, 3]`) plus where they came from.

    `frame_indices[i]` is the source frame number of `frames[i]` (the identity for an image or a fully decoded
    video); results keep this mapping so masks can be put back on the source video.
    """

    frames: np.ndarray
    fps: float | None = None
    frame_indices: list[int] = field(default_factory=list)
    source: str | None = None
    source_num_frames: int | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if f.ndim == 3:  # a single HxWx3 image
            f = f[None]
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise MediaError(
                f"{self.source or 'clip'}: frames must be uint8 [T, H, W, 3], got {f.dtype} {tuple(f.shape)}"
            )
        if f.shape[0] == 0:
            raise MediaError(f"{self.source or 'clip'}: has no frames")
        self.frames = f
        if not self.frame_indices:
            self.frame_indices = list(range(f.shape[0]))
        if len(self.frame_indices) != f.shape[0]:
            raise MediaError("clip: frame_indices must have one entry per frame")
        if self.source_num_frames is None:
            self.source_num_frames = max(self.frame_indices) + 1

    @classmethod
    def from_image(cls, image: np.ndarray, source: str | None = None) -> "Clip":
        return cls(np.asarray(image)[None], fps=None, source=source)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original media."""
        return self.height, self.width

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1 and self.fps is None

    def select(self, positions: list[int]) -> "Clip":
        """A clip of a subset of this clip's frames (positions index `frames`)."""
        return Clip(
            self.frames[positions],
            fps=self.fps,
            frame_indices=[self.frame_indices[p] for p in positions],
            source=self.source,
            source_num_frames=self.source_num_frames,
        )
