"""Model families. One sub-package per family (`pixelwise.models.unipixel`, ...).

Each family follows the transformers layout — `configuration_*`, `modeling_*`, `processing_*` and a checkpoint
conversion module — so that a reader who knows one family, or transformers itself, finds their way in the others.
Families read their *official* on-disk checkpoints directly (safetensors only) and are checked against test vectors
produced by the official implementation (`pixelwise conformance DIR`).
"""
