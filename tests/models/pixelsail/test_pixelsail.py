"""Pixel-SAIL: sequence layout, positions, visual-prompt injection, prefix mask, cached generation, masks, I/O."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from pixelwise.core.errors import CheckpointError, ConfigError, PromptError
from pixelwise.core.prompts import Box, Point
from pixelwise.models.pixelsail.configuration_pixelsail import PixelSailConfig, prompt_token
from pixelwise.models.pixelsail.modeling_pixelsail import PixelSailModel
from pixelwise.modules.patches import patch_coverage
from pixelwise.modules.upsample import blocks_for_stride
from pixelwise.recipes.pixelsail.build import new_pixelsail

CORPUS = ["Please segment the small red star.", "It is a medium red circle [SEG].", "Describe <region>.",
          "What color is <region>?", "It is blue.", "There are 2 green objects: a star [SEG] and a ring [SEG]."] * 5
SIZES = dict(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, seg_channels=16,
             upsampler_channels=16, patch_size=8, image_size=64, num_prompt_tokens=4)


@pytest.fixture(scope="module")
def tiny():
    model, proc = new_pixelsail(CORPUS, seed=0, vocab_size=300, **SIZES)
    return model.eval(), proc


def _image(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_sequence_layout_and_positions(tiny):
    model, proc = tiny
    inp = proc.build(_image(), "Please segment the star.", "It is a star [SEG].")
    gh, gw = inp.grid
    assert (gh, gw) == (6, 8)  # long side 64 -> 8 patches; short side 48 -> 6 (rounded up)
    s, e = inp.vision_span
    assert e - s == gh * gw
    assert (inp.input_ids[s:e] == model.patch_id).all()
    pos = inp.position_ids
    # patch (r, c): (t, y, x) = (s, s + r, s + c)
    r, c = 2, 5
    assert pos[:, s + r * gw + c].tolist() == [s, s + r, s + c]
    # the text after the image continues from s + max(h, w) on all three axes
    assert pos[:, e].tolist() == [s + max(gh, gw)] * 3
    assert (pos[:, e + 1:] == pos[0, e + 1:]).all()
    # only the answer (and its end token) is supervised
    answer_ids = inp.input_ids[inp.labels_mask].tolist()
    assert proc.decode_answer(answer_ids)[0] == "It is a star [SEG]."


def test_prompt_coverage_rule():
    mask = np.zeros((64, 64), bool)
    mask[8, 8] = True  # one pixel in patch (1, 1) of an 8x8 grid
    cov = patch_coverage(mask, (8, 8)).reshape(8, 8)
    assert cov.sum() == 1 and cov[1, 1]
    mask[0:17, 0:9] = True
    cov = patch_coverage(mask, (8, 8)).reshape(8, 8)
    assert cov[:3, :2].all() and cov.sum() == 6


def test_visual_prompt_injection_only_touches_covered_patches(tiny):
    model, proc = tiny
    img = _image()
    plain = proc.build(img, "Describe <region>.", prompts=[Box(0, 0, 16, 16)])
    assert prompt_token(0) in proc.text.decode(plain.input_ids.tolist())
    no_prompt = dataclasses.replace(plain, prompt_ids=torch.full_like(plain.prompt_ids, -1))
    with torch.no_grad():
        a, b = model.embed_one(plain), model.embed_one(no_prompt)
    diff = (a - b).abs().sum(-1) > 0
    s = plain.vision_span[0]
    covered = (plain.prompt_ids >= 0).nonzero()[:, 0] + s
    assert set(diff.nonzero()[:, 0].tolist()) == set(covered.tolist())
    assert len(covered) == 4  # a 16x16 box covers 2x2 patches of 8 px


def test_region_placeholders_and_limits(tiny):
    _, proc = tiny
    rng = random.Random(0)
    inp = proc.build(_image(), "Compare <region> and <region>.", prompts=[Point(3, 3), Point(40, 30)], rng=rng)
    text = proc.text.decode(inp.input_ids.tolist())
    assert "<region>" not in text and sum(f"<Prompt{k}>" in text for k in range(4)) == 2
    with pytest.raises(PromptError):
        proc.build(_image(), "Describe <region>.", prompts=[Point(1, 1)] * 5)  # 4 prompt tokens only
    with pytest.raises(PromptError):
        proc.build(_image(), "Describe <region>.", prompts=[Point(500, 1)])  # outside the image


def test_image_block_is_bidirectional_and_text_causal(tiny):
    model, proc = tiny
    img = _image()
    inp = proc.build(img, "Please segment the star.", "It is a star [SEG].")
    s, e = inp.vision_span
    changed = dataclasses.replace(inp, patches=inp.patches.clone())
    changed.patches[-1] += 1.0  # the last patch
    with torch.no_grad():
        h1, h2 = model([inp]).hidden[0], model([changed]).hidden[0]
    assert not torch.allclose(h1[s], h2[s])  # the first patch sees the last one
    assert torch.allclose(h1[:s], h2[:s])  # tokens before the image do not
    later = dataclasses.replace(inp, input_ids=inp.input_ids.clone())
    later.input_ids[-2] = proc.text.token_id("[SEG]")
    with torch.no_grad():
        h3 = model([later]).hidden[0]
    assert torch.allclose(h1[:-2], h3[:-2], atol=1e-6)  # text is causal


def test_cached_generation_matches_teacher_forcing(tiny):
    from pixelwise.modules.transformer import text_positions

    model, proc = tiny
    img = _image(seed=3)
    prompt = proc.build(img, "Please segment the star.")
    pred = model.generate(prompt, max_new_tokens=12)
    assert 1 <= len(pred.ids) <= 12
    # the same ids fed at once (no cache) give the same greedy choices at every step
    ids = torch.tensor(pred.ids)
    nxt = int(prompt.position_ids[:, -1].max()) + 1
    forced = dataclasses.replace(prompt, input_ids=torch.cat([prompt.input_ids, ids]),
                                 position_ids=torch.cat([prompt.position_ids, text_positions(nxt, len(ids))], 1),
                                 labels_mask=torch.zeros(prompt.length + len(ids), dtype=torch.bool))
    with torch.no_grad():
        logits = model([forced]).logits[0]
    greedy = logits[prompt.length - 1: prompt.length - 1 + len(ids)].argmax(-1).tolist()
    assert greedy == pred.ids


def test_masks_at_seg_positions_and_shapes(tiny):
    model, proc = tiny
    img = _image(seed=4)
    inp = proc.build(img, "Segment two things.", "A [SEG] and B [SEG].")
    logits = model.masks_for_answer(inp)
    assert logits.shape == (2, 48, 64)
    # dense features at the paper's stride 4: an 8-px patch grid upsampled 2x
    out = model([inp])
    s, e = inp.vision_span
    dense = model.dense_features(out.hidden[0, s:e], inp.grid)
    assert dense.shape == (model.config.seg_channels, 12, 16)


def test_upsampler_variants():
    assert blocks_for_stride(16, 4) == 2  # paper: H/4
    assert blocks_for_stride(16, 2) == 3  # release: 1 + log2(16/4)
    cfg = PixelSailConfig(patch_size=16, upsampler_variant="release", token_ids={})
    assert cfg.output_stride == 2 and cfg.upsample_blocks == 3
    with pytest.raises(ValueError):
        blocks_for_stride(8, 3)


def test_save_load_roundtrip_drops_distillation(tiny, tmp_path):
    model, proc = tiny
    cfg = dataclasses.replace(model.config, distill_dim=8, distill_fine_dim=4)
    m = PixelSailModel(cfg).eval()
    m.load_state_dict(model.state_dict(), strict=False)
    m.save_pretrained(tmp_path, proc)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["distill_dim"] == 0 and saved["model_type"] == "pixelwise_pixelsail"
    back = PixelSailModel.from_pretrained(tmp_path)
    inp = proc.build(_image(), "Please segment the star.", "It is [SEG].")
    with torch.no_grad():
        assert torch.allclose(back([inp]).logits, m([inp]).logits, atol=1e-6)
    import pixelwise

    pipe = pixelwise.load(tmp_path)
    assert pipe.info()["family"] == "pixelsail"
    r = pipe.segment(_image(), "the star")
    assert r.size == (48, 64) and r.frame_indices == [0]
    # a broken config is a typed error naming the file
    saved["upsampler_variant"] = "magic"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="upsampler_variant"):
        PixelSailModel.from_pretrained(tmp_path)


def test_missing_weights_are_a_checkpoint_error(tiny, tmp_path):
    model, proc = tiny
    model.config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError):
        PixelSailModel.from_pretrained(tmp_path)


def test_training_step_reduces_mask_loss(tiny):
    """A few optimiser steps on one referring sample lower the point-sampled mask loss (the training path works)."""
    from pixelwise.modules.point_losses import point_sampled_mask_loss

    _, proc = tiny
    torch.manual_seed(0)
    model = PixelSailModel(proc.config)
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:40, 20:44] = (220, 38, 38)
    target = torch.zeros(1, 64, 64)
    target[0, 16:40, 20:44] = 1
    inp = proc.build(img, "Please segment the red square.", "It is a red square [SEG].")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model([inp])
        s, e = inp.vision_span
        seg = ((inp.input_ids == model.seg_id) & inp.labels_mask).nonzero()[:, 0]
        logits = model.mask_logits(out.hidden[0, seg], model.dense_features(out.hidden[0, s:e], inp.grid))
        loss = point_sampled_mask_loss(logits, target, num_points=512)["mask"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sam2_teacher_from_a_unipixel_checkpoint():
    from pathlib import Path

    from pixelwise.models.pixelsail.distill import distillation_loss, load_sam2_teacher, teacher_features

    ckpt = Path(__file__).resolve().parents[2] / "data" / "conformance" / "unipixel" / "checkpoint"
    teacher = load_sam2_teacher(ckpt)
    frames = torch.from_numpy(np.stack([_image(64, 64, 1), _image(64, 64, 2)]))
    embed, fine = teacher_features(teacher, frames)
    s = teacher.image_size
    assert embed.shape == (2, teacher.hidden_dim, s // 16, s // 16)
    assert fine.shape == (2, teacher.hidden_dim // 8, s // 4, s // 4)
    student = torch.zeros(teacher.hidden_dim, 8, 8)
    assert distillation_loss(student, embed[0]).item() > 0
    with pytest.raises(CheckpointError):
        load_sam2_teacher(ckpt.parent)  # no config.json there
