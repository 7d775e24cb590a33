"""UFO (Tang et al., NeurIPS 2025): masks by retrieval against the LLM's own image-token states (N^2 `<MASK>` tokens
for N x upsampling), boxes as text, parallel grid decoding for "all objects of a kind" — on a Qwen2.5-VL trunk.
See docs/families.md for what follows the paper and what follows the release."""

from pixelwise.models.ufo.configuration_ufo import MODEL_TYPE, UFOConfig
from pixelwise.models.ufo.modeling_ufo import (
    GridDetection,
    UFOForConditionalGeneration,
    UFOOutput,
    UFOPrediction,
    mask_groups,
    token_ids_of,
)
from pixelwise.models.ufo.pipeline_ufo import UFOPipeline
from pixelwise.models.ufo.processing_ufo import UFOProcessor, assign_to_grid, grid_points, is_parallel_query

__all__ = ["GridDetection", "MODEL_TYPE", "UFOConfig", "UFOForConditionalGeneration", "UFOOutput", "UFOPipeline",
           "UFOPrediction", "UFOProcessor", "assign_to_grid", "grid_points", "is_parallel_query", "mask_groups",
           "token_ids_of"]
