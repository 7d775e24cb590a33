"""The media of one query or chat: the frames the model reads, and a way to reach every frame for propagation.

The model reads `num_frames` frames of a video spread uniformly (first and last included; all of them when the
video is shorter), or exactly the frames given as `frame_indices`. Prompts (`Point.frame`, ...) index those frames,
as a result's masks do. Masks can be propagated over those frames or over every frame of the media;
`Result.frame_indices` always maps the result's frames to source frame numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelwise.core.clip import Clip
from pixelwise.core.errors import MediaError
from pixelwise.core.media import ImageSource, MediaSource, open_media, uniform_indices

MediaLike = str | Path | Clip | np.ndarray
PROPAGATE_MODES = ("sampled", "all")


@dataclass
class QueryMedia:
    """Media opened for a query. `sampled` holds the frames the model reads (`frame_indices` = source numbers);
    `positions[i]` is the place of sampled frame i in the media's frame list."""

    sampled: Clip
    positions: list[int]
    num_frames: int
    is_image: bool
    source: MediaSource | Clip  # every frame: decoded again on demand (files) or already in memory (Clip)
    path: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.sampled.size

    def frame_numbers(self) -> list[int]:
        """Source frame number of every media frame."""
        if isinstance(self.source, Clip):
            return list(self.source.frame_indices)
        return list(range(self.num_frames))

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame of the media in order (decoded lazily from files)."""
        if isinstance(self.source, Clip):
            yield from self.source.frames
        else:
            for _, frame in self.source.iter_frames():
                yield frame

    def all_frames_view(self) -> Clip | str | None:
        """What a result over every frame draws on: the clip in memory, or the media path (read again on save)."""
        return self.source if isinstance(self.source, Clip) else self.path


def as_clip(media: Clip | np.ndarray) -> Clip:
    if isinstance(media, Clip):
        return media
    arr = np.asarray(media)
    return Clip.from_image(arr) if arr.ndim == 3 else Clip(arr)


def open_query_media(media: MediaLike, num_frames: int, frame_indices: Sequence[int] | None = None) -> QueryMedia:
    """Open `media` (a path, a `Clip` or a uint8 array) and decode the frames the model reads."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise MediaError(f"num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(media, (Clip, np.ndarray)):
        source: MediaSource | Clip = as_clip(media)
        path, is_image = None, source.is_image
    else:
        source = open_media(media)
        path, is_image = str(media), isinstance(source, ImageSource)
    total = source.num_frames
    if frame_indices is None:
        positions = uniform_indices(total, int(num_frames))
    else:
        positions = [int(i) for i in frame_indices]
        if not positions or positions != sorted(set(positions)) or not 0 <= positions[0] <= positions[-1] < total:
            raise MediaError(f"frame_indices must be increasing frame numbers below {total}, got {list(frame_indices)}")
    sampled = source.select(positions) if isinstance(source, Clip) else source.read(positions)
    return QueryMedia(sampled, positions, total, is_image, source, path)
