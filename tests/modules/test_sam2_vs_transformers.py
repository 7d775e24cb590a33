"""Long-clip cross-check of `Sam2Model.track` against transformers' independent `Sam2VideoModel`.

The conformance vectors have 6 frames and only the last one is "absent", so they cannot exercise the 7-frame memory
window, the 16-pointer window, or the memory / pointer of an absent frame. Here both implementations get the same
random weights (converted to transformers' names), 18 frames, the same hidden prompt on frame 0 (injected into
transformers' prompt encoder) and a forced present/absent pattern of the object score; the memory-attention outputs
and low-res logits of every frame must agree. Three harness adjustments make transformers follow UniPixel's settings:
memory features stay fp32 (it casts them to bf16), and the conditioning mask is not binarised (its dummy click would
otherwise count as a point prompt; UniPixel runs without `binarize_mask_from_pts_for_mem_enc`).
"""

from __future__ import annotations

import re
import types

import pytest
import torch

from pixelwise.modules.sam2 import Sam2Config, Sam2Model
from pixelwise.modules.sam2.common import LayerNorm2d

hf_video = pytest.importorskip("transformers.models.sam2_video.modeling_sam2_video")

IMG, HID, MEM, T = 128, 128, 64, 18  # transformers hard-codes a 64-wide memory
ABSENT = {3, 4, 8, 13, 14, 15}

_RENAMES = [
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."), (r"^image_encoder\.neck\.", "vision_encoder.neck."),
    (r"neck\.convs\.(\d+)\.conv\.", r"neck.convs.\1."), (r"patch_embed\.proj\.", "patch_embed.projection."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."), (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"mask_downscaling\.0\.", "mask_embed.conv1."), (r"mask_downscaling\.1\.", "mask_embed.layer_norm1."),
    (r"mask_downscaling\.3\.", "mask_embed.conv2."), (r"mask_downscaling\.4\.", "mask_embed.layer_norm2."),
    (r"mask_downscaling\.6\.", "mask_embed.conv3."), (r"output_upscaling\.0\.", "upscale_conv1."),
    (r"output_upscaling\.1\.", "upscale_layer_norm."), (r"output_upscaling\.3\.", "upscale_conv2."),
    ((r"^((?:mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))|obj_ptr_proj)"
     r"\.layers\.(\d)\."), lambda m: f"{m.group(1)}.{['proj_in', 'layers.0', 'proj_out'][int(m.group(2))]}."),
    (r"mlp\.layers\.0\.", "mlp.proj_in."), (r"mlp\.layers\.1\.", "mlp.proj_out."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."), (r"\.out_proj\.", ".o_proj."),
    (r"pix_feat_proj", "feature_projection"), (r"mask_downsampler\.encoder\.12\.", "mask_downsampler.final_conv."),
    (r"mask_downsampler\.encoder\.(\d+)\.",
     lambda m: f"mask_downsampler.layers.{int(m.group(1)) // 3}.{'conv' if int(m.group(1)) % 3 == 0 else 'layer_norm'}."),
    (r"\.fuser\.", ".memory_fuser."), (r"dwconv", "depthwise_conv"), (r"pwconv", "pointwise_conv"),
    (r"(memory_fuser\.layers\.\d+)\.weight$", r"\1.scale"), (r"norm_final_attn", "layer_norm_final_attn"),
    (r"\.norm(\d)\.", r".layer_norm\1."), (r"\.norm\.", ".layer_norm."), (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    (r"^no_mem_embed$", "no_memory_embedding"), (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"), (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."), (r"^obj_ptr_proj\.", "object_pointer_proj."),
]


def to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official SAM2 names -> transformers' Sam2VideoModel names (test helper)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("sam_prompt_encoder.point_embeddings."):
            continue
        if key == "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
            out["prompt_encoder.shared_embedding.positional_embedding"] = value
            out["shared_image_embedding.positional_embedding"] = value
            continue
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    out["prompt_encoder.point_embed.weight"] = torch.cat(
        [sd[f"sam_prompt_encoder.point_embeddings.{i}.weight"] for i in range(4)])
    return out


def _randomise(model: Sam2Model) -> None:
    """Well-conditioned random weights (zero / default inits would leave whole paths inert)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * torch.randn_like(p))
            if re.search(r"fuser\.layers\.\d+\.weight$", name):
                p.fill_(0.5)  # layer scale
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, LayerNorm2d)):
                module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
        # damp the memory-independent skip path so that the logits depend on the memory
        model.sam_mask_decoder.conv_s0.weight.mul_(0.01)
        model.sam_mask_decoder.conv_s1.weight.mul_(0.01)


def _score_pattern():
    """Forward hook adding +-5 to the k-th object-score call (one call per frame in both implementations)."""
    calls = [0]

    def hook(module, inputs, output):
        k = calls[0]
        calls[0] += 1
        return output + (-5.0 if k in ABSENT else 5.0)
    return hook


def _capture(store: list):
    def hook(module, inputs, output):
        store.append((output[0] if isinstance(output, tuple) else output).detach().clone())
    return hook


class _InjectHidden(torch.nn.Module):
    """Wraps transformers' prompt encoder; the first call (conditioning frame) returns the given sparse tokens."""

    def __init__(self, inner: torch.nn.Module, sparse: torch.Tensor) -> None:
        super().__init__()
        self.inner, self.pending = inner, sparse
        self.mask_input_size, self.image_embedding_size = inner.mask_input_size, inner.image_embedding_size

    def forward(self, **kwargs):
        sparse, dense = self.inner(**kwargs)
        if self.pending is not None:
            sparse, self.pending = self.pending, None
        return sparse, dense


@pytest.mark.slow
def test_long_clip_matches_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    torch.manual_seed(0)
    cfg = Sam2Config(image_size=IMG, hidden_dim=HID, mem_dim=MEM, trunk_embed_dim=16, trunk_num_heads=1,
                     trunk_stages=(1, 2, 3, 1), trunk_global_att_blocks=(4,),
                     trunk_window_pos_embed_bkg_spatial_size=(7, 7), backbone_channel_list=(128, 64, 32, 16),
                     memory_attention_layers=2, memory_attention_ff_dim=256)
    mine = Sam2Model(cfg).eval()
    _randomise(mine)

    vision = {"model_type": "sam2_vision_model", "backbone_config": {
        "model_type": "sam2_hiera_det_model", "hidden_size": 16, "image_size": [IMG, IMG], "blocks_per_stage": [1, 2, 3, 1],
        "embed_dim_per_stage": [16, 32, 64, 128], "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [8, 4, 14, 7], "global_attention_blocks": [4], "window_positional_embedding_background_size": [7, 7]},
        "backbone_channel_list": [128, 64, 32, 16], "backbone_feature_sizes": [[IMG // 4] * 2, [IMG // 8] * 2, [IMG // 16] * 2],
        "fpn_hidden_size": HID}
    hcfg = Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config={"hidden_size": HID, "image_size": IMG, "patch_size": 16},
        mask_decoder_config={"hidden_size": HID, "mlp_dim": 2048, "num_attention_heads": 8, "iou_head_hidden_dim": 256},
        image_size=IMG, num_maskmem=7, memory_attention_hidden_size=HID, memory_attention_num_layers=2,
        memory_attention_feed_forward_hidden_size=256, memory_attention_rope_feat_sizes=[IMG // 16] * 2,
        memory_encoder_hidden_size=HID, memory_encoder_output_channels=MEM, mask_downsampler_embed_dim=HID,
        memory_fuser_embed_dim=HID, memory_fuser_intermediate_dim=4 * HID, max_object_pointers_in_encoder=16)
    ref = Sam2VideoModel(hcfg).eval()
    missing, unexpected = ref.load_state_dict(to_transformers(mine.state_dict()), strict=False)
    assert not missing and not unexpected

    # a moving random texture: features change from frame to frame
    base = torch.randn(3, IMG, IMG)
    frames = torch.stack([torch.roll(base, shifts=(3 * t, 2 * t), dims=(1, 2)) for t in range(T)])
    hidden = torch.randn(1, 2, HID)

    mine_attn: list[torch.Tensor] = []
    mine.sam_mask_decoder.pred_obj_score_head.register_forward_hook(_score_pattern())
    mine.memory_attention.register_forward_hook(_capture(mine_attn))
    with torch.no_grad():
        out = mine.track(mine.encode_frames(frames), hidden, frame_size=(90, 120))
    absent = (out.object_score_logits[0] <= 0).nonzero().flatten().tolist()
    assert absent == sorted(ABSENT)

    # --- transformers, driven the way UniPixel drives the official predictor
    monkeypatch.setattr(hf_video, "torch", _Fp32Memory("torch"))
    encode = ref._encode_new_memory
    monkeypatch.setattr(ref, "_encode_new_memory", lambda *a, **k: encode(*a, **{**k, "is_mask_from_pts": False}))
    nap = mine.sam_prompt_encoder.not_a_point_embed.weight
    ref.prompt_encoder = _InjectHidden(ref.prompt_encoder, torch.cat([nap, nap, hidden[0]])[None, None])
    ref_attn: list[torch.Tensor] = []
    ref.mask_decoder.pred_obj_score_head.register_forward_hook(_score_pattern())
    ref.memory_attention.register_forward_hook(_capture(ref_attn))
    session = hf_video.Sam2VideoInferenceSession(video=frames, video_height=90, video_width=120,
                                                 inference_device="cpu", dtype=torch.float32)
    obj = session.obj_id_to_idx(1)
    session.add_point_inputs(obj, 0, {"point_coords": torch.zeros(1, 1, 1, 2),
                                      "point_labels": torch.ones(1, 1, 1, dtype=torch.int32)})
    session.obj_with_new_inputs = [1]
    ref_low = {}
    with torch.inference_mode():
        ref(inference_session=session, frame_idx=0)
        for o in ref.propagate_in_video_iterator(inference_session=session, start_frame_idx=0):
            ref_low[o.frame_idx] = o.pred_masks[0, 0].clone()
    assert ref.prompt_encoder.pending is None and sorted(ref_low) == list(range(T))

    assert len(mine_attn) == len(ref_attn) == T - 1
    for t, (a, b) in enumerate(zip(mine_attn, ref_attn), start=1):
        b = b.transpose(0, 1) if b.shape != a.shape else b
        assert torch.allclose(a, b.reshape(a.shape), atol=3e-6, rtol=0), f"memory attention, frame {t}"
    for t in range(T):
        assert torch.allclose(out.lowres_mask_logits[0, t], ref_low[t], atol=3e-6, rtol=1e-5), f"logits, frame {t}"


class _Fp32Memory(types.ModuleType):
    """Stand-in for `torch` inside transformers' SAM2-video module that maps bfloat16 to float32 (fp32 memory)."""

    def __getattr__(self, name: str):
        return torch.float32 if name == "bfloat16" else getattr(torch, name)
