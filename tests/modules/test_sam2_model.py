"""Behaviour of `pixelwise.modules.sam2` beyond the conformance numbers: batching, loading, encoder reuse,
lazy (streaming-style) frame sources, gradients through the video memory, and configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.modules.sam2 import Sam2Config, Sam2Model


@pytest.fixture(scope="module")
def video(conformance_dir: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """The 6 SAM2 video frames and three different recorded prompts (d seg0, e seg0, e seg1) as [3, 2, C]."""
    frames = load_file(str(conformance_dir / "media.safetensors"))["video.sam2_frames"]
    d = load_file(str(conformance_dir / "case_d_video_seg_teacher_forced.safetensors"))
    e = load_file(str(conformance_dir / "case_e_video_ref_point_box.safetensors"))
    prompts = torch.stack([d["out.seg0.prompt_tokens"], e["out.seg0.prompt_tokens"], e["out.seg1.prompt_tokens"]])
    return frames, prompts, tuple(int(v) for v in d["in.frame_size"])


FIELDS = ("mask_logits", "lowres_mask_logits", "object_score_logits", "obj_ptr", "decoder_iou_pred",
          "decoder_multimask_logits", "sparse_prompt")


def test_batch_of_three_equals_each_alone(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
        together = sam2_model.track(feats, prompts, frame_size=size)
        for i in range(3):
            alone = sam2_model.track(feats, prompts[i: i + 1], frame_size=size)
            for name in FIELDS:
                a, b = getattr(together, name)[i], getattr(alone, name)[0]
                assert torch.allclose(a, b, atol=1e-5, rtol=0), f"object {i} {name}: {(a - b).abs().max()}"
            assert torch.equal(together.masks[i], alone.masks[0])
    assert together.mask_logits.shape == (3, frames.shape[0], *size)
    assert together.tracked.all()


def test_three_objects_encode_each_frame_once(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    frames = frames.repeat(3, 1, 1, 1)[:16]  # a 16-frame clip
    seen: list[int] = []
    hook = sam2_model.image_encoder.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    start = sam2_model.encoded_frame_count
    try:
        with torch.no_grad():
            out = sam2_model.track(sam2_model.encode_frames(frames), prompts, frame_size=size)
    finally:
        hook.remove()
    assert sam2_model.encoded_frame_count - start == 16
    assert sum(seen) == 16
    assert out.masks.shape[:2] == (3, 16)


def test_lazy_frame_source_matches_precomputed(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    requested: list[int] = []

    def encode(t: int):
        requested.append(t)
        return sam2_model.encode_frame(frames[t])

    with torch.no_grad():
        eager = sam2_model.track(sam2_model.encode_frames(frames), prompts, frame_size=size)
        lazy = sam2_model.track(encode, prompts, frame_size=size, num_frames=frames.shape[0])
    assert requested == list(range(frames.shape[0]))  # each frame once, in order
    for name in FIELDS:
        assert torch.allclose(getattr(eager, name), getattr(lazy, name), atol=1e-5, rtol=0), name


def test_later_conditioning_frame_leaves_earlier_frames_untracked(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    with torch.no_grad():
        out = sam2_model.track(sam2_model.encode_frames(frames), prompts[:1], frame_size=size, cond_frame=2)
    assert out.tracked.tolist() == [False, False, True, True, True, True]
    assert not out.masks[:, :2].any()
    assert (out.lowres_mask_logits[:, :2] == -1024.0).all()


def test_reverse_tracking_is_forward_tracking_of_the_reversed_clip(sam2_model: Sam2Model, video) -> None:
    """`reverse=True` from frame 3 visits 3, 2, 1, 0 and gives what forward tracking of the reversed clip gives from
    its frame 2, each output named by its frame in the original clip."""
    frames, prompts, size = video
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
        back = list(sam2_model.track_frames(feats, prompts, frame_size=size, cond_frame=3, reverse=True))
        flipped = sam2_model.encode_frames(frames.flip(0))
        n = frames.shape[0]
        ahead = list(sam2_model.track_frames(flipped, prompts, frame_size=size, cond_frame=n - 1 - 3))
    assert [o.frame_idx for o in back] == [3, 2, 1, 0]
    assert [n - 1 - o.frame_idx for o in ahead] == [3, 2, 1, 0]
    for b, a in zip(back, ahead):
        for name in FIELDS:
            x, y = getattr(b, name), getattr(a, name)
            assert (x is None and y is None) or torch.allclose(x, y, atol=1e-5, rtol=0), (b.frame_idx, name)


def test_gradients_flow_through_video_memory(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    model = sam2_model
    prompts = prompts[:2].clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model.train()
    try:
        feats = model.encode_frames(frames[:3])
        out = model.track(feats, prompts, frame_size=size)
        # a loss on the last frame only reaches the prompts through the memory of the earlier frames
        out.decoder_multimask_logits[:, -1].sigmoid().mean().backward()
    finally:
        model.eval()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    for module in ("memory_attention", "memory_encoder", "sam_mask_decoder", "image_encoder"):
        grads = [p.grad for p in getattr(model, module).parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, module
    assert model.maskmem_tpos_enc.grad is not None and model.obj_ptr_tpos_proj.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_training_mode_keeps_absent_logits(sam2_model: Sam2Model, video) -> None:
    """UniPixel's SAM2Train does not overwrite absent-object logits by -1024; inference does."""
    frames, prompts, size = video
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
        inf = sam2_model.track(feats, prompts[:1], frame_size=size)
        raw = sam2_model.track(feats, prompts[:1], frame_size=size, no_obj_masking=False)
    absent = inf.object_score_logits[0] <= 0
    assert absent.any()
    assert (inf.lowres_mask_logits[0][absent] == -1024.0).all()
    assert (raw.lowres_mask_logits[0][absent] > -1024.0).any()


# ---------------------------------------------------------------------------------------------------- loading
def test_missing_key_raises_checkpoint_error(unipixel_config: dict, sam2_state_dict: dict) -> None:
    model = Sam2Model(Sam2Config.from_unipixel_config(unipixel_config))
    sd = dict(sam2_state_dict)
    del sd["memory_attention.layers.2.cross_attn_image.k_proj.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: memory_attention\.layers\.2\.cross_attn_image\.k_proj"):
        model.load_official_state_dict(sd)


def test_mis_shaped_and_unexpected_keys_raise(unipixel_config: dict, sam2_state_dict: dict) -> None:
    model = Sam2Model(Sam2Config.from_unipixel_config(unipixel_config))
    sd = dict(sam2_state_dict)
    sd["no_obj_ptr"] = torch.zeros(1, 32)
    sd["bogus.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        model.load_official_state_dict(sd)
    assert "mis-shaped keys: no_obj_ptr (checkpoint (1, 32), model (1, 64))" in str(info.value)
    assert "unexpected keys: bogus.weight" in str(info.value)


def test_meta_gamma_layer_scale_is_renamed(unipixel_config: dict, sam2_state_dict: dict) -> None:
    model = Sam2Model(Sam2Config.from_unipixel_config(unipixel_config))
    sd = {k.replace("fuser.layers.0.weight", "fuser.layers.0.gamma"): v for k, v in sam2_state_dict.items()}
    model.load_official_state_dict(sd)
    assert torch.equal(model.memory_encoder.fuser.layers[0].weight, sam2_state_dict["memory_encoder.fuser.layers.0.weight"])
    assert torch.equal(model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
                       sam2_state_dict["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])


def test_checkpoint_covers_every_entry(unipixel_config: dict, sam2_state_dict: dict) -> None:
    model = Sam2Model(Sam2Config.from_unipixel_config(unipixel_config))
    assert set(model.state_dict()) == set(sam2_state_dict)
    derived = unipixel_config["sam2_arch"]["derived"]
    assert sum(p.numel() for p in model.parameters()) == derived["num_parameters"]


# ---------------------------------------------------------------------------------------------------- config
def test_bplus_preset_matches_official_size() -> None:
    """UniPixel's SAM2 (Hiera-B+ at 768 px): 80,850,178 parameters, 615 state entries (reference notes 1.2)."""
    cfg = Sam2Config.from_unipixel_config({"sam2_config": "configs/sam2.1_hiera_b+", "sam2_image_size": 768})
    assert cfg.image_size == 768 and cfg.image_embedding_size == 48 and cfg.trunk_embed_dim == 112
    with torch.device("meta"):
        model = Sam2Model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 80_850_178
    assert len(model.state_dict()) == 615
    assert tuple(model.image_encoder.trunk.pos_embed.shape) == (1, 112, 14, 14)
    assert tuple(model.image_encoder.trunk.blocks[21].proj.weight.shape) == (896, 448)


@pytest.mark.parametrize("name", ["t", "s", "b+", "l"])
def test_presets_build_consistent_trunks(name: str) -> None:
    with torch.device("meta"):
        model = Sam2Model(Sam2Config.preset(name, image_size=512))
    assert model.image_encoder.trunk.channel_list == list(model.cfg.backbone_channel_list)


def test_config_round_trip_and_errors(unipixel_config: dict) -> None:
    cfg = Sam2Config.from_unipixel_config(unipixel_config)
    assert (cfg.image_size, cfg.hidden_dim, cfg.mem_dim) == (128, 64, 16)
    assert Sam2Config.from_unipixel_config({"sam2_arch": cfg.to_dict()}) == cfg
    assert Sam2Config.from_unipixel_config({"sam2_arch": cfg.to_dict(), "sam2_image_size": 256}).image_size == 256
    with pytest.raises(ConfigError):
        Sam2Config.from_unipixel_config({"sam2_config": "configs/unknown"})
    with pytest.raises(ConfigError):
        Sam2Config.preset("xl")
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, image_size=100)
    arch = dict(unipixel_config["sam2_arch"]["resolved_model_config"], pred_obj_scores=False)
    with pytest.raises(ConfigError, match="pred_obj_scores"):
        Sam2Config.from_hydra_model_config(arch)


def test_bad_inputs_are_rejected(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    with pytest.raises(ValueError):
        sam2_model.encode_frames(frames[:, :, :64])
    feats = sam2_model.encode_frames(frames[:1])
    with pytest.raises(ValueError):
        sam2_model.track(feats, prompts[:, :, :32], frame_size=size)
    with pytest.raises(ValueError):
        sam2_model.track(feats, prompts, frame_size=size, cond_frame=1)


def test_bfloat16_tracking_runs_and_stays_close(sam2_model: Sam2Model, video) -> None:
    """UniPixel's official inference runs SAM2 in bf16: every encoding must follow the module dtype."""
    import copy

    frames, prompts, size = video
    model16 = copy.deepcopy(sam2_model).to(torch.bfloat16)
    with torch.no_grad():
        ref = sam2_model.track(sam2_model.encode_frames(frames), prompts[:1], frame_size=size)
        out = model16.track(model16.encode_frames(frames.bfloat16()), prompts[:1].bfloat16(), frame_size=size)
    assert out.mask_logits.dtype == torch.bfloat16
    assert (out.masks != ref.masks).float().mean() < 0.01
    assert torch.equal(out.object_score_logits > 0, ref.object_score_logits > 0)


def test_track_frames_streams_and_low_memory_collection(sam2_model: Sam2Model, video) -> None:
    frames, prompts, size = video
    with torch.no_grad():
        feats = sam2_model.encode_frames(frames)
        full = sam2_model.track(feats, prompts, frame_size=size)
        lean = sam2_model.track(feats, prompts, frame_size=size, keep_logits=False)
        streamed = list(sam2_model.track_frames(feats, prompts, frame_size=None, cond_frame=1))
    assert lean.mask_logits is None and torch.equal(lean.masks, full.masks)
    assert [f.frame_idx for f in streamed] == list(range(1, frames.shape[0]))
    assert streamed[0].sparse_prompt is not None and all(f.sparse_prompt is None for f in streamed[1:])
    assert all(f.mask_logits is None for f in streamed)
    with pytest.raises(TypeError):
        list(sam2_model.track_frames(lambda t: feats[t], prompts, frame_size=size))
