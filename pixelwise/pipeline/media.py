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
from typing import Any

import numpy as np

from pixelwise.core.clip import Clip
from pixelwise.core.errors import MediaError
from pixelwise.core.media import ImageSource, MediaSource, open_media, uniform_indices

MediaLike = Any  # str | Path | Clip | np.ndarray | PIL.Image.Image | torch.Tensor | a list of frames
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


def frames_note(qm: QueryMedia) -> str:
    """What a prompt's frame number counts, for error messages: the frames read, not the media's frames."""
    if qm.is_image:
        return ""
    return (f"; the model reads {qm.sampled.num_frames} of the media's {qm.num_frames} frames and a prompt's frame "
            "counts those (read more with num_frames / --frames)")


def as_clip(media: Clip | np.ndarray) -> Clip:
    if isinstance(media, Clip):
        return media
    arr = np.asarray(media)
    return Clip.from_image(arr) if arr.ndim == 3 else Clip(arr)


def in_memory_frames(media: Any) -> Clip | np.ndarray | None:
    """Media given as objects rather than a path, as the field passes them: a `Clip`; a uint8 array `[H, W, 3]` or
    `[T, H, W, 3]`; a PIL image (converted to RGB); a torch tensor (`[3, H, W]` / `[T, 3, H, W]` channels-first or
    channels-last, uint8 or float in [0, 1]); a list of any of those frames (a clip). None for a path."""
    if isinstance(media, (Clip, np.ndarray)):
        return media
    if isinstance(media, (list, tuple)):
        if not media:
            raise MediaError("media: an empty list of frames")
        frames = [in_memory_frames(f) for f in media]
        if any(f is None or isinstance(f, Clip) or np.asarray(f).ndim != 3 for f in frames):
            raise MediaError("media: a list must hold frames (PIL images, [H, W, 3] arrays or [3, H, W] tensors)")
        if len({np.asarray(f).shape for f in frames}) > 1:
            raise MediaError(f"media: the frames differ in size ({sorted({np.asarray(f).shape for f in frames})})")
        return np.stack(frames)
    module = type(media).__module__.split(".")[0]
    if module == "PIL":
        return np.asarray(media.convert("RGB"))
    if module == "torch":
        return _tensor_frames(media)
    return None


def _tensor_frames(t: Any) -> np.ndarray:
    import torch

    arr = t.detach().cpu()
    if arr.ndim not in (3, 4):
        raise MediaError(f"media: a tensor of shape {tuple(arr.shape)}; give [3, H, W], [H, W, 3] or a batch of them")
    if arr.shape[-1] != 3 and arr.shape[-3] == 3:  # channels-first -> channels-last
        arr = arr.movedim(-3, -1)
    if arr.shape[-1] != 3:
        raise MediaError(f"media: a tensor of shape {tuple(arr.shape)} has no 3-channel (RGB) axis")
    if arr.is_floating_point():
        arr = (arr.float().clamp(0, 1) * 255).round()
    return arr.to(torch.uint8).numpy()


def open_query_media(media: MediaLike, num_frames: int, frame_indices: Sequence[int] | None = None) -> QueryMedia:
    """Open `media` (a path, a `Clip` or a uint8 array) and decode the frames the model reads."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise MediaError(f"num_frames must be a positive integer, got {num_frames!r}")
    frames = in_memory_frames(media)
    if frames is not None:
        source: MediaSource | Clip = as_clip(frames)
        path, is_image = None, source.is_image
    else:
        if not isinstance(media, (str, Path)):
            raise MediaError(f"media of type {type(media).__name__}: give a path, a PIL image, an array, a tensor, "
                             "a list of frames or a Clip")
        if isinstance(media, str) and "://" in media:
            raise MediaError(f"{media}: URLs are not fetched; download the file first and pass its path")
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
