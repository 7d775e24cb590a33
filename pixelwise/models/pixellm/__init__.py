"""PixelLM (Ren et al., CVPR 2024): segmentation codebook + light multi-scale pixel decoder on a Qwen2.5-VL trunk,
no SAM. See docs/families.md for what follows the paper and what follows the release."""

from pixelwise.models.pixellm.configuration_pixellm import MODEL_TYPE, PixelLMConfig
from pixelwise.models.pixellm.modeling_pixellm import (
    PixelDecoder,
    PixelLMForSegmentation,
    PixelLMOutput,
    PixelLMPrediction,
    refinement_loss,
)
from pixelwise.models.pixellm.pipeline_pixellm import PixelLMPipeline
from pixelwise.models.pixellm.processing_pixellm import PixelLMProcessor

__all__ = ["MODEL_TYPE", "PixelDecoder", "PixelLMConfig", "PixelLMForSegmentation", "PixelLMOutput",
           "PixelLMPipeline", "PixelLMPrediction", "PixelLMProcessor", "refinement_loss"]
