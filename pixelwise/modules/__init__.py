"""Reusable neural-network building blocks shared by several pixelwise models.

Each sub-package is a self-contained, pure-PyTorch module family (no I/O, no transformers dependency) that a model
package under `pixelwise.models` composes. `pixelwise.modules.sam2` is SAM 2.1 (image encoder, prompt encoder, mask
decoder, video memory) in the official facebookresearch parameter layout, with the UniPixel hook that appends
LLM-produced prompt tokens to the sparse prompt.
"""
