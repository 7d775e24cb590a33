"""Reading images, videos and frame folders into `Clip`s, with frame sampling and streaming access.

Every source has the same small interface (`MediaSource`): `num_frames`, `fps`, `size`, `read(indices)` and
`iter_frames(indices)`. Videos are decoded lazily through PyAV: sampling 16 frames from a long clip decodes up to the
last wanted frame and keeps only those 16 in memory. Limits guard against decompression bombs and absurd sizes.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixelwise.core.clip import Clip
from pixelwise.core.errors import MediaError, MediaTooLargeError
from pixelwise.core.io import atomic_write

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif"}


@dataclass(frozen=True)
class MediaLimits:
    """Upper bounds on what we agree to decode. Override per call or via `PIXELWISE_MAX_*` environment variables."""

    max_pixels: int = int(os.environ.get("PIXELWISE_MAX_PIXELS", 8192 * 8192))  # per frame
    max_frames: int = int(os.environ.get("PIXELWISE_MAX_FRAMES", 100_000))  # per clip
    max_bytes: int = int(os.environ.get("PIXELWISE_MAX_BYTES", 4 << 30))  # per file


DEFAULT_LIMITS = MediaLimits()


def _check_size(path: Path, width: int, height: int, limits: MediaLimits) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"{path}: has an empty frame size {width}x{height}")
    if width * height > limits.max_pixels:
        raise MediaTooLargeError(
            f"{path}: frame size {width}x{height} exceeds the limit of {limits.max_pixels} pixels per frame"
        )


def _check_file(path: Path, limits: MediaLimits) -> None:
    """Exists, and is a folder or a regular file (a FIFO, device or socket would block or never end a read) of a
    size within the limits: checked before anything opens it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file or folder") from None
    except OSError as e:
        raise MediaError(f"{path}: cannot read ({e.strerror or e})") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise MediaError(f"{path}: not a regular file or folder (a FIFO, device or socket cannot be read as media)")
    if path.is_file():
        size = st.st_size
        if size == 0:
            raise MediaError(f"{path}: file is empty (0 bytes)")
        if size > limits.max_bytes:
            raise MediaTooLargeError(f"{path}: {size} bytes exceeds the limit of {limits.max_bytes} bytes")


@contextlib.contextmanager
def open_image_checked(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS) -> Iterator[Image.Image]:
    """Open an image with PIL, refusing unreadable files and oversize headers *before* decoding pixels."""
    path = Path(path)
    _check_file(path, limits)
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise MediaError(f"{path}: not a readable image") from None
    except Image.DecompressionBombError as e:
        raise MediaTooLargeError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:  # corrupt headers (a truncated IHDR chunk) surface here
        raise MediaError(f"{path}: cannot open image ({e})") from None
    try:
        _check_size(path, im.width, im.height, limits)
        yield im
    finally:
        im.close()


def _image_to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    try:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit grayscale: scale to 8 bits instead of PIL's clipping conversion
            arr = np.asarray(im, dtype=np.float64)
            top = arr.max() if arr.size and arr.max() > 255 else 255.0
            gray = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=-1)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            # composite transparent pixels on black, as video decoders do
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data surfaces here
        raise MediaError(f"{path}: corrupt or truncated image ({e})") from None


def load_image(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3] (EXIF orientation is applied)."""
    from PIL import ImageOps

    path = Path(path)
    with open_image_checked(path, limits) as im:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block must not make a readable image unreadable
            pass
        return _image_to_rgb(im, path)


# --------------------------------------------------------------------------------------------------- sampling


def uniform_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over `total` frames, first and last included; all frames if `total <= count`.

    Same rule as the UniPixel tools (`arange(0, n, (n-1)/(k-1))[:k]` rounded half-to-even), so the sampled
    frames of a video equal the official ones.
    """
    if total <= 0:
        return []
    if count <= 0:
        raise MediaError(f"number of frames to sample must be positive, got {count}")
    if total <= count:
        return list(range(total))
    if count == 1:
        return [0]
    step = (total - 1) / (count - 1)
    return [int(i) for i in np.arange(0, total, step)[:count].round()]


def uniform_indices_with(total: int, count: int, required: Sequence[int] = ()) -> list[int]:
    """`uniform_indices`, then each required frame that is missing replaces the nearest sampled frame that is not
    itself required (the earlier one on a tie); sorted. More required frames than `count` are all kept.

    This is how a prompt drawn on frame 57 stays visible to a model that reads 16 frames of the clip.
    """
    need = sorted({int(f) for f in required})
    bad = [f for f in need if not 0 <= f < total]
    if bad:
        raise MediaError(f"frame {bad[0]} requested, but the media has {total} frame(s)")
    chosen = uniform_indices(total, count)
    for f in need:
        if f in chosen:
            continue
        free = [i for i, c in enumerate(chosen) if c not in need]
        if free:
            chosen[min(free, key=lambda i: (abs(chosen[i] - f), chosen[i]))] = f
        else:
            chosen.append(f)
    return sorted(set(chosen))


def every_k_indices(total: int, k: int) -> list[int]:
    if k <= 0:
        raise MediaError(f"--every must be a positive integer, got {k}")
    return list(range(0, total, k))


def fps_indices(total: int, source_fps: float | None, target_fps: float) -> list[int]:
    """Frames at `target_fps` (by timestamp), never more than the source has."""
    if target_fps <= 0:
        raise MediaError(f"sampling fps must be positive, got {target_fps}")
    if not source_fps or target_fps >= source_fps:
        return list(range(total))
    step = source_fps / target_fps
    return sorted({min(total - 1, int(round(i * step))) for i in range(int(total / step + 1e-9) + 1) if i * step < total})


def sample_indices(
    total: int,
    num_frames: int | None = None,
    every: int | None = None,
    fps: float | None = None,
    source_fps: float | None = None,
) -> list[int]:
    """Pick frame indices by one rule: uniform `num_frames`, every `every`-th frame, or a target `fps`."""
    chosen = [x is not None for x in (num_frames, every, fps)]
    if sum(chosen) > 1:
        raise MediaError("choose one sampling rule: num_frames, every or fps")
    if num_frames is not None:
        return uniform_indices(total, num_frames)
    if every is not None:
        return every_k_indices(total, every)
    if fps is not None:
        return fps_indices(total, source_fps, fps)
    return list(range(total))


# --------------------------------------------------------------------------------------------------- sources


class MediaSource:
    """Common interface of images, videos and frame folders."""

    path: Path
    num_frames: int
    fps: float | None
    size: tuple[int, int]  # (H, W)

    def iter_frames(self, indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        idx = [int(i) for i in indices]
        bad = [i for i in idx if i < 0 or i >= self.num_frames]
        if bad:
            raise MediaError(f"{self.path}: frame {bad[0]} requested, but it has {self.num_frames} frame(s)")
        return idx

    def read(self, indices: Sequence[int] | None = None) -> Clip:
        """Decode the given frames (all if None) into a Clip, keeping their source numbers."""
        idx = list(range(self.num_frames)) if indices is None else self._check_indices(indices)
        if not idx:
            raise MediaError(f"{self.path}: no frames selected")
        frames = dict(self.iter_frames(sorted(set(idx))))
        missing = [i for i in idx if i not in frames]
        if missing:
            raise MediaError(f"{self.path}: could not decode frame {missing[0]} (file truncated?)")
        h, w = self.size
        for i in idx:
            if frames[i].shape[:2] != (h, w):
                raise MediaError(f"{self.path}: frame {i} is {frames[i].shape[1]}x{frames[i].shape[0]}, expected {w}x{h}")
        return Clip(
            np.stack([frames[i] for i in idx]),
            fps=self.fps,
            frame_indices=idx,
            source=str(self.path),
            source_num_frames=self.num_frames,
        )


class ImageSource(MediaSource):
    def __init__(self, path: str | Path, limits: MediaLimits = DEFAULT_LIMITS):
        self.path = Path(path)
        self._frame = load_image(self.path, limits)
        self.num_frames, self.fps = 1, None
        self.size = self._frame.shape[:2]

    def iter_frames(self, indices=None):
        for i in self._check_indices([0] if indices is None else indices):
            yield i, self._frame

    def read(self, indices=None) -> Clip:
        self._check_indices([0] if indices is None else indices)
        return Clip.from_image(self._frame, source=str(self.path))


def _natural_key(name: str) -> tuple:
    """Sort 'frame_2.png' before 'frame_10.png': by the numbers in the name, then the name."""
    nums = [int(n) for n in re.findall(r"\d+", name)]
    return (nums, name)


class FrameFolder(MediaSource):
    def __init__(self, path: str | Path, limits: MediaLimits = DEFAULT_LIMITS):
        self.path = Path(path)
        self.limits = limits
        files = [p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise MediaError(f"{self.path}: folder has no image frames ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        if len(files) > limits.max_frames:
            raise MediaTooLargeError(f"{self.path}: {len(files)} frames exceed the limit of {limits.max_frames}")
        self.files = sorted(files, key=lambda p: _natural_key(p.name))
        self.num_frames = len(self.files)
        self.fps = None
        with open_image_checked(self.files[0], limits) as im:
            self.size = (im.height, im.width)

    def iter_frames(self, indices=None):
        idx = range(self.num_frames) if indices is None else self._check_indices(indices)
        for i in idx:
            yield i, load_image(self.files[i], self.limits)


class VideoSource(MediaSource):
    """A video file decoded with PyAV, lazily: frames are decoded in order and dropped unless requested."""

    def __init__(self, path: str | Path, limits: MediaLimits = DEFAULT_LIMITS):
        import av

        self.path = Path(path)
        self.limits = limits
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise MediaError(f"{self.path}: has no video stream")
                stream = container.streams.video[0]
                if stream.codec_context is None:  # a stream whose codec FFmpeg does not know (corrupt header)
                    raise MediaError(f"{self.path}: video stream has no decodable codec")
                w, h = stream.codec_context.width, stream.codec_context.height
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else None
                count = stream.frames
                if not count:  # container without a frame count (webm, some avi): count packets, no decoding
                    count = sum(1 for p in container.demux(stream) if p.size)
        except MediaError:
            raise
        except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
            raise MediaError(f"{self.path}: not a readable video ({type(e).__name__}: {e})") from None
        _check_size(self.path, w, h, limits)
        if count <= 0:
            raise MediaError(f"{self.path}: video has no frames")
        if count > limits.max_frames:
            raise MediaTooLargeError(f"{self.path}: {count} frames exceed the limit of {limits.max_frames}")
        self.size = (h, w)
        self.num_frames = int(count)

    def iter_frames(self, indices=None):
        import av

        wanted = None if indices is None else set(self._check_indices(indices))
        last = None if wanted is None else max(wanted, default=-1)
        if last is not None and last < 0:
            return
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    # every frame's size, from the decoder's frame header and before any conversion: a stream
                    # whose later frames grow (16x16, then 16000x16000) is refused at the first one that differs
                    if (frame.height, frame.width) != self.size:
                        raise MediaError(f"{self.path}: frame {i} is {frame.width}x{frame.height}, but the video "
                                         f"is {self.size[1]}x{self.size[0]} (its size changes mid-stream)")
                    if wanted is None or i in wanted:
                        yield i, frame.to_ndarray(format="rgb24")
                    if last is not None and i >= last:
                        break
        except MediaError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise MediaError(f"{self.path}: decoding failed ({type(e).__name__}: {e})") from None


def open_media(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS) -> MediaSource:
    """Open an image, a video file or a folder of frames by looking at the path (and, for files, the content)."""
    path = Path(path)
    _check_file(path, limits)
    if path.is_dir():
        return FrameFolder(path, limits)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return ImageSource(path, limits)
    if ext in VIDEO_EXTENSIONS:
        return VideoSource(path, limits)
    # unknown extension: try as an image, then as a video
    try:
        return ImageSource(path, limits)
    except MediaTooLargeError:
        raise
    except MediaError:
        pass
    try:
        return VideoSource(path, limits)
    except MediaError:
        raise MediaError(f"{path}: neither a readable image nor a readable video") from None


def load_media(
    path: str | Path,
    num_frames: int | None = None,
    every: int | None = None,
    fps: float | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Clip:
    """Open media and decode the sampled frames (see `sample_indices`) into a Clip."""
    src = open_media(path, limits)
    if src.num_frames == 1 and isinstance(src, ImageSource):
        return src.read()
    return src.read(sample_indices(src.num_frames, num_frames, every, fps, src.fps))


def save_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: float = 8.0) -> Path:
    """Write uint8 RGB frames as MP4 (H.264 via PyAV, even dimensions padded) atomically."""
    import av


    path = Path(path)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise MediaError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    fmt = {".webm": "webm", ".avi": "avi", ".mov": "mov"}.get(path.suffix.lower(), "mp4")
    codec = {"webm": "libvpx-vp9", "avi": "mpeg4"}.get(fmt, "libx264")
    from fractions import Fraction

    with atomic_write(path) as f:
        with av.open(f, mode="w", format=fmt) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            for arr in frames:
                if arr.shape[:2] != (h, w):
                    raise MediaError(f"{path}: all frames must have the same size")
                if (ph, pw) != (h, w):
                    arr = np.pad(arr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path
