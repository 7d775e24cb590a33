"""Pixel-SAIL (arXiv 2504.10465): one transformer over raw image patches and text, a learnable upsampler, visual
prompts injected into patch embeddings, vision-expert distillation. See docs/families.md.

Files: `configuration_pixelsail` (config.json), `processing_pixelsail` (image -> patches + ChatML sequence, M-RoPE
ids, prompt coverage), `modeling_pixelsail` (the model), `pipeline_pixelsail` (`pixelwise.load` target),
`distill` (SAM2 teacher). The recipe that trains it (fresh model + tokenizer, the CPU loop) is
`pixelwise/recipes/pixelsail/`.
"""

from pixelwise.models.pixelsail.configuration_pixelsail import MODEL_TYPE, PixelSailConfig
from pixelwise.models.pixelsail.modeling_pixelsail import PixelSailModel
from pixelwise.models.pixelsail.pipeline_pixelsail import PixelSailPipeline
from pixelwise.models.pixelsail.processing_pixelsail import PixelSailProcessor

__all__ = ["MODEL_TYPE", "PixelSailConfig", "PixelSailModel", "PixelSailPipeline", "PixelSailProcessor"]
