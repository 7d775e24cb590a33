"""What the server agrees to do for one request, and where it may read server-side media from.

A server on a shared machine must not be taken down by one request: every size a client controls (body bytes,
pixels per frame, frames per clip, frames to sample, text length, number of prompts) has an upper bound here, and
every bound is enforced before the expensive step it protects (decoding, the model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pixelwise.core.errors import MediaError, PixelwiseError
from pixelwise.core.media import MediaLimits


class ForbiddenPathError(PixelwiseError):
    """A server-side path outside the allowed media root (or server-side paths are disabled)."""

    http_status = 403


class RequestTooLargeError(PixelwiseError):
    """A request body over the upload limit."""

    http_status = 413


class BadRequestError(PixelwiseError):
    """A request whose form fields or JSON do not follow the API (missing field, wrong type, bad JSON)."""

    http_status = 422


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class ServeLimits:
    """Per-request bounds and queue settings of one server. Defaults suit a CPU box; raise them for a GPU."""

    max_upload_bytes: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_UPLOAD_BYTES", 64 << 20))
    max_pixels: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_PIXELS", 4096 * 4096))
    max_source_frames: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_SOURCE_FRAMES", 10_000))
    max_num_frames: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_NUM_FRAMES", 64))
    max_decoded_bytes: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_DECODED_BYTES", 2 << 30))
    max_new_tokens: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_NEW_TOKENS", 512))
    max_text_chars: int = 4000
    max_prompts: int = 32
    max_queue: int = field(default_factory=lambda: _env_int("PIXELWISE_SERVE_MAX_QUEUE", 16))
    timeout_s: float = field(default_factory=lambda: float(os.environ.get("PIXELWISE_SERVE_TIMEOUT_S", "120")))

    def media_limits(self) -> MediaLimits:
        """The decoder limits: the same pixel/frame bounds. File size is bounded for uploads by the body limit;
        server-side files (the reason to send a path is a large local video) keep the library's file-size bound."""
        return MediaLimits(max_pixels=self.max_pixels, max_frames=self.max_source_frames)

    def to_json(self) -> dict[str, float | int]:
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_source_frames": self.max_source_frames,
            "max_num_frames": self.max_num_frames,
            "max_decoded_bytes": self.max_decoded_bytes,
            "max_new_tokens": self.max_new_tokens,
            "max_text_chars": self.max_text_chars,
            "max_prompts": self.max_prompts,
            "max_queue": self.max_queue,
            "timeout_s": self.timeout_s,
        }


def resolve_media_path(path: str, root: Path | None) -> Path:
    """The real location of a client-given path, refused unless it lies inside `root` once symlinks are resolved.

    Relative paths are taken relative to `root`. Resolving first (not string prefix checks) is what stops `..`,
    absolute paths elsewhere and symlinks that point out of the root. Messages echo only what the client sent.
    """
    if root is None:
        raise ForbiddenPathError("server-side paths are disabled on this server (start it with --media-root DIR)")
    if not path or "\x00" in path:
        raise BadRequestError("path: must be a non-empty file path")
    root = root.resolve()
    candidate = Path(path)
    real = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not real.is_relative_to(root):
        raise ForbiddenPathError(f"path '{path}' lies outside the server's media root")
    if not real.exists():
        raise MediaError(f"path '{path}': no such file or folder under the media root")
    if real.is_dir():  # a folder of frames: each frame must lie in the root too (a symlink may point anywhere)
        try:
            entries = list(os.scandir(real))
        except OSError:
            raise MediaError(f"path '{path}': the folder cannot be listed") from None
        for entry in entries:
            if not Path(entry.path).resolve().is_relative_to(root):
                raise ForbiddenPathError(f"path '{path}': frame '{entry.name}' links outside the server's media root")
    elif not real.is_file():
        raise MediaError(f"path '{path}': not a regular file or folder")
    return real

