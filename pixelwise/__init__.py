"""pixelwise: pixel-level vision-language models — run, train, evaluate and serve them."""

from pixelwise.core.clip import Clip
from pixelwise.core.errors import (
    CheckpointError,
    ConfigError,
    FormatError,
    MaskError,
    MediaError,
    PixelwiseError,
    PromptError,
)
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.core.results import Result, SegObject

__version__ = "0.1.0"


def __getattr__(name: str):
    # The pipeline imports torch and transformers: only when first used, so `import pixelwise` stays light.
    if name in ("load", "register_family", "Query"):
        from pixelwise import pipeline  # lazy: `import pixelwise` stays light until load() is used

        return getattr(pipeline, name)
    raise AttributeError(f"module 'pixelwise' has no attribute {name!r}")


__all__ = [
    "Box",
    "CheckpointError",
    "Clip",
    "ConfigError",
    "FormatError",
    "MaskError",
    "MaskPrompt",
    "MediaError",
    "PixelwiseError",
    "Point",
    "PromptError",
    "Query",
    "Result",
    "SegObject",
    "__version__",
    "load",
    "register_family",
]
