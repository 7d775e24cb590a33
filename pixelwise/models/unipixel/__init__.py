"""UniPixel (PolyU-ChenLab, NeurIPS 2025): Qwen2.5-VL + SAM2 with `<|ref|>`, `<|mem|>` and `<|seg|>` tokens.

Reads the official checkpoints (safetensors, legacy key layout) and reproduces the official numerics, checked by
`pixelwise conformance` against vectors produced by the official implementation.
"""

from pixelwise.models.unipixel.configuration_unipixel import UniPixelConfig
from pixelwise.models.unipixel.modeling_unipixel import (
    GenerationOutput,
    Prediction,
    PrefixCache,
    SegmentationOutput,
    UniPixelForConditionalGeneration,
    UniPixelOutput,
)
from pixelwise.models.unipixel.pipeline_unipixel import UniPixelPipeline
from pixelwise.models.unipixel.processing_unipixel import (
    RefPrompt,
    UniPixelInputs,
    UniPixelProcessor,
    masks_for_memory,
    mem_prefix,
    mention_tokens,
    option_tokens,
    ref_prompt,
    ref_prompt_from_mask,
    ref_text,
    render_chat,
    video_message,
)

__all__ = ["GenerationOutput", "Prediction", "PrefixCache", "RefPrompt", "SegmentationOutput", "UniPixelConfig",
           "UniPixelForConditionalGeneration", "UniPixelInputs", "UniPixelOutput", "UniPixelPipeline",
           "UniPixelProcessor", "masks_for_memory", "mem_prefix", "mention_tokens", "option_tokens", "ref_prompt",
           "ref_prompt_from_mask", "ref_text", "render_chat", "video_message"]
