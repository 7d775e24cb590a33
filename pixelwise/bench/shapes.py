"""Random-weight UniPixel models of real shapes (`pixelwise bench --shapes 3b`): the cost of the real model without
its weights. The tokenizer, token ids and processor settings come from a checkpoint folder (`tokenizer_from`); only
the network shapes change (the official UniPixel-3B config; vocab rows stay the tokenizer's)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor
from pixelwise.models.unipixel.configuration_unipixel import UniPixelConfig
from pixelwise.models.unipixel.pipeline_unipixel import UniPixelPipeline
from pixelwise.pipeline import DEFAULT_MODEL
from pixelwise.pipeline.base import resolve_device

# UniPixel-3B: Qwen2.5-VL-3B LLM and ViT, SAM 2.1 Hiera-B+ at 768 px.
SHAPES: dict[str, dict[str, Any]] = {
    "3b": {
        "llm": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                "intermediate_size": 11008, "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default",
                                                             "type": "default"}},
        "vision": {"depth": 32, "hidden_size": 1280, "num_heads": 16, "intermediate_size": 3420,
                   "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112, "out_hidden_size": 2048},
        "sam2": {"sam2_config": "sam2.1_hiera_b+", "sam2_image_size": 768},
    },
}


def shaped_config(base: dict[str, Any], shapes: str) -> dict[str, Any]:
    """`base` config.json with the LLM / ViT / SAM2 shapes of `shapes`."""
    if shapes not in SHAPES:
        raise ValueError(f"unknown shapes {shapes!r}; known: {', '.join(SHAPES)}")
    s = SHAPES[shapes]
    cfg = copy.deepcopy(base)
    cfg.update(s["llm"])
    cfg.update(s["sam2"])
    cfg.pop("sam2_arch", None)  # the preset names the architecture
    text = cfg.get("text_config")
    if isinstance(text, dict):
        text.update(s["llm"])
        text["layer_types"] = ["full_attention"] * s["llm"]["num_hidden_layers"]
    cfg["vision_config"] = {**cfg.get("vision_config", {}), **s["vision"]}
    return cfg


def random_pipeline(shapes: str, tokenizer_from: str | Path | None, device: Any = "auto", dtype: Any = None) -> Any:
    """A `UniPixelPipeline` with random weights of `shapes` (float32 on CPU unless `dtype`)."""
    import torch


    folder = Path(tokenizer_from) if tokenizer_from is not None else DEFAULT_MODEL
    cfg = shaped_config(json.loads((folder / "config.json").read_text()), shapes)
    dev, dt = resolve_device(device, dtype)
    torch.manual_seed(0)
    model = UniPixelForConditionalGeneration(UniPixelConfig.from_dict(cfg, source=f"{shapes} shapes")).to(dev, dt)
    processor = UniPixelProcessor.from_pretrained(folder, sam2_image_size=int(cfg["sam2_image_size"]))
    pipe = UniPixelPipeline(model, processor)
    return pipe
