"""A small Qwen2.5-VL trunk (transformers 5.x modules) shared by the decoder-light families (PixelLM, UFO).

Those families need more from the vision-language model than text generation:

* PixelLM reads *patch-level* features of chosen ViT blocks (two visual scales for its pixel decoder), so `encode`
  can tap block outputs and returns them in raster order ([T', gh, gw, C]), undoing Qwen's window permutation.
* UFO reads the LLM's own final-norm hidden states at the image-token positions, lets image tokens attend to each other
  bidirectionally, packs several independent answer sub-sequences into one sequence, and re-injects image features
  into local tokens at every layer. So `run` takes an explicit boolean attention mask [B, 1, L, L] and an optional
  per-layer hook, and returns the final-norm hidden states.

Nothing here knows about segmentation; positions come from `pixelwise.modules.mrope` via the family's
processor (MRoPE with the transformers-4.53.3 rule, the same positions UniPixel uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

LayerHook = Callable[[int, torch.Tensor], torch.Tensor]
"""`hook(layer_index, hidden_states [B, L, D]) -> hidden_states`, called before every decoder layer."""


# The tiny trunk the from-scratch families (PixelLM, UFO) start from: their configs copy these defaults.
DEFAULT_TEXT_SIZES: dict[str, Any] = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
                                      "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [4, 6, 6]}
DEFAULT_VISION_SIZES: dict[str, Any] = {"depth": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                                        "patch_size": 8, "window_size": 64, "fullatt_block_indexes": [1, 3]}


def text_config(sizes: dict[str, Any], vocab_size: int):
    """A `Qwen2_5_VLTextConfig` from a plain dict (hidden_size, num_hidden_layers, ..., mrope_section)."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

    cfg = Qwen2_5_VLTextConfig(
        vocab_size=vocab_size,
        hidden_size=int(sizes["hidden_size"]),
        intermediate_size=int(sizes["intermediate_size"]),
        num_hidden_layers=int(sizes["num_hidden_layers"]),
        num_attention_heads=int(sizes["num_attention_heads"]),
        num_key_value_heads=int(sizes.get("num_key_value_heads", sizes["num_attention_heads"])),
        hidden_act="silu",
        max_position_embeddings=int(sizes.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(sizes.get("rms_norm_eps", 1e-6)),
        use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": float(sizes.get("rope_theta", 1_000_000.0)),
                         "mrope_section": [int(s) for s in sizes["mrope_section"]]},
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def vision_config(sizes: dict[str, Any], out_hidden_size: int):
    """A `Qwen2_5_VLVisionConfig` from a plain dict (depth, hidden_size, patch_size, ...)."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

    cfg = Qwen2_5_VLVisionConfig(
        depth=int(sizes["depth"]),
        hidden_size=int(sizes["hidden_size"]),
        hidden_act="silu",
        intermediate_size=int(sizes["intermediate_size"]),
        num_heads=int(sizes["num_heads"]),
        in_channels=3,
        patch_size=int(sizes["patch_size"]),
        spatial_merge_size=int(sizes.get("spatial_merge_size", 2)),
        temporal_patch_size=int(sizes.get("temporal_patch_size", 2)),
        tokens_per_second=int(sizes.get("tokens_per_second", 2)),
        window_size=int(sizes.get("window_size", 112)),
        out_hidden_size=out_hidden_size,
        fullatt_block_indexes=[int(i) for i in sizes.get("fullatt_block_indexes", [])],
    )
    cfg._attn_implementation = "sdpa"
    return cfg


@dataclass
class VisionFeatures:
    """Vision tower output for a batch of images/clips (concatenated in input order)."""

    embeds: torch.Tensor  # [N, D] merged tokens, raster order: what fills the <|video_pad|> slots
    grids: list[tuple[int, int, int]]  # per item (T', h, w) of the *merged* grid
    taps: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # block -> per item [T', gh, gw, Cv] patch level

    def split(self) -> list[torch.Tensor]:
        """Merged embeddings per item: [T'*h*w, D] each."""
        return list(self.embeds.split([t * h * w for t, h, w in self.grids]))


class QwenVL(nn.Module):
    """Qwen2.5-VL vision tower + text model + tied LM head, with block taps and explicit attention masks."""

    def __init__(self, text: dict[str, Any], vision: dict[str, Any], vocab_size: int):
        super().__init__()
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
            Qwen2_5_VisionTransformerPretrainedModel,
            Qwen2_5_VLTextModel,
        )

        tcfg = text_config(text, vocab_size)
        self.visual = Qwen2_5_VisionTransformerPretrainedModel(vision_config(vision, tcfg.hidden_size))
        self.language_model = Qwen2_5_VLTextModel(tcfg)
        self.lm_head = nn.Linear(tcfg.hidden_size, vocab_size, bias=False)
        self.lm_head.weight = self.language_model.embed_tokens.weight
        self.hidden_size = tcfg.hidden_size
        self.merge_size = int(vision.get("spatial_merge_size", 2))

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def encode(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, taps: Sequence[int] = ()) -> VisionFeatures:
        """Patches of one or more items -> merged tokens (raster) + the outputs of the tapped ViT blocks (raster).

        A tap index may be negative (-1 = last block). Blocks run on Qwen's window-permuted sequence, in which the
        2 x 2 patches of a merge unit are contiguous; we undo the unit permutation and then the 2 x 2 interleave.
        """
        from transformers.vision_utils import get_vision_window_index

        depth = len(self.visual.blocks)
        wanted = sorted({t % depth for t in taps})
        captured: dict[int, torch.Tensor] = {}
        handles = [self.visual.blocks[b].register_forward_hook(
            lambda _m, _a, out, b=b: captured.__setitem__(b, out[0] if isinstance(out, tuple) else out))
            for b in wanted]
        try:
            out = self.visual(pixel_values.to(self.lm_head.weight.dtype), grid_thw=grid_thw)
        finally:
            for h in handles:
                h.remove()
        ms = self.merge_size
        grids = [(int(t), int(h) // ms, int(w) // ms) for t, h, w in grid_thw.reshape(-1, 3).tolist()]
        feats = VisionFeatures(embeds=out.pooler_output, grids=grids)
        if wanted:
            vc = self.visual.config
            window_index, _ = get_vision_window_index(grid_thw, vc.spatial_merge_size, vc.window_size, vc.patch_size)
            reverse = torch.argsort(window_index)
            for tap in taps:
                x = captured[tap % depth]
                x = x.reshape(-1, ms * ms, x.shape[-1])[reverse]  # merge units back in patchify (raster) order
                items = []
                for chunk, (t, h, w) in zip(x.split([t * h * w for t, h, w in grids]), grids):
                    c = chunk.reshape(t, h, w, ms, ms, -1).permute(0, 1, 3, 2, 4, 5)
                    items.append(c.reshape(t, h * ms, w * ms, -1))
                feats.taps[tap] = items
        return feats

    def run(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
            layer_hook: LayerHook | None = None) -> torch.Tensor:
        """embeds [B, L, D], MRoPE positions [3, B, L], bool mask [B, 1, L, L] (True = may attend) -> final-norm
        hidden states [B, L, D]. `layer_hook` may rewrite the input of every decoder layer (UFO's re-injection)."""
        handles = []
        if layer_hook is not None:
            for i, layer in enumerate(self.language_model.layers):
                def pre(_m, args, kwargs, i=i):
                    if args:
                        return (layer_hook(i, args[0]), *args[1:]), kwargs
                    kwargs["hidden_states"] = layer_hook(i, kwargs["hidden_states"])
                    return args, kwargs

                handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        try:
            out = self.language_model(inputs_embeds=inputs_embeds, position_ids=position_ids,
                                      attention_mask={"full_attention": attention_mask}, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return out.last_hidden_state


    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
                 max_new_tokens: int, stop_ids: Sequence[int], force: Callable[[int], Sequence[int]] | None = None,
                 ) -> GreedyOutput:
        """Greedy decoding of one sequence with a KV cache. The prompt runs once with its own mask (e.g. UFO's
        bidirectional image block); every new token attends to everything before it. `force(tok)` may return
        tokens that must follow `tok` (a codebook group, a `<MASK>` group); they are fed without being predicted.
        """
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=self.language_model.config)
        out = self.language_model(inputs_embeds=inputs_embeds, position_ids=position_ids,
                                  attention_mask={"full_attention": attention_mask}, past_key_values=cache,
                                  use_cache=True)
        prefill = out.last_hidden_state[0]
        h = prefill[-1]
        next_pos = int(position_ids.max()) + 1
        length = inputs_embeds.shape[1]
        new: list[int] = []
        states: list[torch.Tensor] = []
        forced: list[int] = []
        stops = {int(t) for t in stop_ids}
        device = inputs_embeds.device
        while True:
            if forced:
                tok = forced.pop(0)
            else:
                if len(new) >= max_new_tokens:
                    break
                tok = int(self.lm_head(h).argmax())
                forced = list(force(tok)) if force is not None else []
            new.append(tok)
            states.append(h)
            if tok in stops and not forced:
                break
            emb = self.embed_tokens(torch.tensor([[tok]], device=device))
            pos = torch.full((3, 1, 1), next_pos, dtype=torch.int64, device=device)
            next_pos += 1
            length += 1
            mask = torch.ones(1, 1, 1, length, dtype=torch.bool, device=device)
            out = self.language_model(inputs_embeds=emb, position_ids=pos, attention_mask={"full_attention": mask},
                                      past_key_values=cache, use_cache=True)
            h = out.last_hidden_state[0, -1]
        step = torch.stack(states) if states else prefill.new_zeros(0, prefill.shape[-1])
        return GreedyOutput(new, step, prefill)


@dataclass
class GreedyOutput:
    ids: list[int]  # generated tokens (a final stop token included)
    states: torch.Tensor  # [N, D] final-norm state that predicted (or, when forced, preceded) each new token
    prefill: torch.Tensor  # [P, D] final-norm states of the prompt


def causal_mask(length: int, valid: int | None = None, bidirectional: Sequence[tuple[int, int]] = (),
                device: torch.device | None = None) -> torch.Tensor:
    """bool [L, L]: causal over the first `valid` positions, plus full attention inside each [start, end) span.

    Padding rows (beyond `valid`) attend to position 0 only, so softmax never sees an all-masked row.
    """
    valid = length if valid is None else valid
    m = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    for s, e in bidirectional:
        m[s:e, s:e] = True
    m[valid:, :] = False
    m[:, valid:] = False
    m[valid:, 0] = True
    return m
