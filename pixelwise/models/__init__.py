"""Model families. One sub-package per family (`pixelwise.models.unipixel`, ...).

Each family follows the transformers layout — `configuration_*`, `modeling_*`, `processing_*`, and the family's
`pipeline_*` on top of `pixelwise.pipeline.base` — so that a reader who knows one family, or transformers itself,
finds their way in the others. Checkpoints are safetensors only. UniPixel also reads the *official* on-disk
checkpoints (its weight loader maps the official key names) and is checked against test vectors produced by the
official implementation (`pixelwise conformance DIR`); the other four are pixelwise's own implementations of their
papers (docs/families.md).
"""
