"""One exception hierarchy for everything pixelwise raises on bad input.

The CLI turns any `PixelwiseError` into a one-line message and exit code 2; the HTTP server into a 4xx.
Messages name the offending input (a path, an argument, a JSON field) so a user can fix it without a traceback.
"""

from __future__ import annotations


class PixelwiseError(Exception):
    """Base class: a problem with what the user gave us (never a bug in pixelwise)."""

    http_status = 400


class MediaError(PixelwiseError):
    """An image, video or frame folder that cannot be read, is empty, or exceeds a limit."""

    http_status = 422


class MediaTooLargeError(MediaError):
    """Media over a configured limit (pixels per frame, frames per clip, bytes)."""

    http_status = 413


class PromptError(PixelwiseError):
    """A visual prompt (point, box, mask) or text prompt that is malformed or outside the media."""

    http_status = 422


class MaskError(PixelwiseError):
    """A mask or RLE of the wrong size, type or encoding."""

    http_status = 422


class FormatError(PixelwiseError):
    """An annotation / prediction file that does not follow its declared layout."""

    http_status = 422


class CheckpointError(PixelwiseError):
    """A model folder or weights file that is missing, unsafe, or does not match its config."""

    http_status = 500


class ConfigError(PixelwiseError):
    """A configuration value of the wrong type or out of range."""

    http_status = 422
