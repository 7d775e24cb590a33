"""VITRON (NeurIPS 2024): an LLM front end that routes requests to back-end specialists with hybrid messages — a
structured text instruction plus the `[SIG]` task embedding. See docs/families.md.

Files: `configuration_vitron`, `instruction` (command format, parser, training labels), `processing_vitron`
(frames -> patches, ChatML, constrained command grammar), `modeling_vitron` (front-end encoder, region encoder,
router, signal embedding, segmentation back-end, synergy discriminator), `backends` (editing, generation, optional
diffusers), `pipeline_vitron` (`pixelwise.load` target; `segment`, `ask`, `edit`, `generate`, `chat`). The recipe
that trains it (fresh model + tokenizer, the CPU loop) is `pixelwise/recipes/vitron/`.
"""

from pixelwise.models.vitron.configuration_vitron import MODEL_TYPE, VitronConfig
from pixelwise.models.vitron.modeling_vitron import VitronModel
from pixelwise.models.vitron.pipeline_vitron import VitronPipeline
from pixelwise.models.vitron.processing_vitron import VitronProcessor

__all__ = ["MODEL_TYPE", "VitronConfig", "VitronModel", "VitronPipeline", "VitronProcessor"]
