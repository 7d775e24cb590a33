"""Reusable neural-network building blocks shared by several pixelwise models.

Blocks that a model package under `pixelwise.models` composes: mostly pure PyTorch; the exceptions are named in
their modules (`qwen_vl`/`vlm` build on transformers' Qwen2.5 layers, `vl_processing` and `checkpoint_io` read and
write tokenizer and weight files). `pixelwise.modules.sam2` is SAM 2.1 (image encoder, prompt encoder, mask
decoder, video memory) in the official facebookresearch parameter layout, with the UniPixel hook that appends
LLM-produced prompt tokens to the sparse prompt.
"""
