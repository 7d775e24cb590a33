"""Model behaviour beyond the vectors: decoding positions, several <|seg|> as one SAM2 batch, prompt errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelwise.core.errors import PromptError
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.models.unipixel import processing_unipixel as P


def _frames(t: int, h: int = 70, w: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.full((t, h, w, 3), 60, np.uint8)
    for i in range(t):
        y, x = 10 + 3 * i, 15 + 4 * i
        frames[i, y:y + 20, x:x + 25] = (200, 40, 40)
    return frames + rng.integers(0, 20, frames.shape, dtype=np.uint8)


def test_decoding_positions_match_a_full_prefill(model, processor):
    """KV-cache steps (cache length + rope delta) give the logits of one prefill over prompt + generated tokens."""
    frames = _frames(5)  # odd count: padded to 6 for the LLM, 3 temporal steps
    msgs = [P.video_message("Please segment the red box in this video.", 5, 6272, 12544)]
    inputs = processor(frames, msgs)
    gen = model.generate(inputs, max_new_tokens=6, stop_token_ids=[])
    assert gen.generated_ids.numel() == 6
    full = processor(frames, msgs)
    full.input_ids = torch.cat([inputs.input_ids, gen.generated_ids[:-1]])
    full.attention_mask = torch.ones_like(full.input_ids)
    out = model(full)
    n = inputs.input_ids.numel()
    torch.testing.assert_close(out.logits[n - 1:], gen.step_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.prenorm_hidden[n - 1:], gen.step_prenorm_hidden, rtol=1e-4, atol=1e-4)


def test_several_seg_tokens_tracked_as_one_batch(model, processor):
    frames = _frames(3, seed=1)
    msgs = [P.video_message("Please segment [0] and [1].", 3, 6272, 12544),
            {"role": "assistant", "content": "[0] <|seg|> [1] <|seg|>"}]
    inputs = processor(frames, msgs)
    out = model(inputs)
    assert len(out.seg_positions) == 2
    states = out.prenorm_hidden[out.seg_positions]
    model.sam2.encoded_frame_count = 0
    seg = model.segment(states, inputs.sam2_frames, inputs.frame_size)
    assert model.sam2.encoded_frame_count == 3  # each frame encoded once for both objects
    assert seg.masks.shape == (2, 3, 70, 100) and seg.masks.dtype == torch.bool
    for k in range(2):
        single = model.segment(states[k:k + 1], inputs.sam2_frames, inputs.frame_size)
        torch.testing.assert_close(single.mask_logits[0], seg.mask_logits[k], rtol=1e-4, atol=1e-4)


def test_predict_collects_prompt_and_generated_segs(model, processor):
    frames = _frames(1, 100, 150)
    msgs = [P.video_message("Please segment the red ball in this image.", 1, 6272, 75264)]
    pred = model.predict(processor(frames, msgs), max_new_tokens=16)
    n_seg = int((pred.generated_ids == model.config.seg_token_id).sum())
    assert len(pred.seg_token_index) == n_seg
    if n_seg:
        assert pred.segmentation.masks.shape == (n_seg, 1, 100, 150)


def test_ref_and_mem_prompts_from_user_prompts(model, processor):
    frames = _frames(4)
    size = (70, 100)
    refs = [P.ref_prompt(Point(30, 20, frame=1), size, processor.sam2_image_size, 4),
            P.ref_prompt(Box(10, 10, 60, 50, frame=3), size, processor.sam2_image_size, 4)]
    msgs = [P.video_message(f"What is {P.ref_text(0)} doing near {P.ref_text(1)}?", 4, 6272, 12544)]
    inputs = processor(frames, msgs)
    inputs.ref_prompts = refs
    out = model(inputs)
    assert out.ref_embeds.shape == (2, model.config.hidden_size)
    inputs.ref_prompts = refs[:1]
    with pytest.raises(PromptError, match="<\\|ref\\|>"):
        model(inputs)

    mask = np.zeros(size, bool)
    mask[10:40, 20:60] = True
    label = P.masks_for_memory([[MaskPrompt(mask, 2)]], 4, size)
    _, refer = processor.memory_inputs(label, inputs.video_grid_thw)
    prefix = P.mem_prefix(refer, 4, is_image=False)
    assert prefix.endswith("[0]: <3>-<4> <|mem|>\n")
    inputs = processor(frames, [P.video_message(prefix + "Describe [0].", 4, 6272, 12544)])
    inputs.refer_mask = refer
    out = model(inputs)
    assert out.mem_embeds.shape == (1, model.config.hidden_size)
    inputs.refer_mask = refer.repeat(1, 2, 1, 1)  # two objects' masks but one <|mem|>
    with pytest.raises(PromptError, match="<\\|mem\\|>"):
        model(inputs)


def test_build_result_from_prediction(model, processor):
    frames = _frames(2, seed=3)
    msgs = [P.video_message("Please segment [0] and [1].", 2, 6272, 12544),
            {"role": "assistant", "content": "[0] <|seg|> [1] <|seg|>"}]
    inputs = processor(frames, msgs)
    pred = model.predict(inputs, max_new_tokens=3)
    result = processor.build_result(pred, [0, 5], inputs.frame_size, stop_token_ids=model.default_stop_token_ids())
    prompt_objects = [o for o in result.objects if o.span is None]
    assert [o.id for o in prompt_objects] == [0, 1]  # teacher-forced objects from the prompt come first
    assert all(o.masks.shape == (2, 70, 100) for o in result.objects)
    assert result.size == (70, 100) and result.frame_indices == [0, 5]
    answer_objects = [o for o in result.objects if o.span is not None]
    assert all(result.answer[a:b] == "<|seg|>" for a, b in (o.span for o in answer_objects))


def test_cached_sam2_features_are_reused(model, processor):
    frames = _frames(2, seed=4)
    msgs = [P.video_message("Segment it.", 2, 6272, 12544), {"role": "assistant", "content": "<|seg|>."}]
    inputs = processor(frames, msgs)
    out = model(inputs)
    states = out.prenorm_hidden[out.seg_positions]
    first = model.segment(states, inputs.sam2_frames, inputs.frame_size)
    model.sam2.encoded_frame_count = 0
    again = model.segment(states, None, inputs.frame_size, features=first.features)
    assert model.sam2.encoded_frame_count == 0
    torch.testing.assert_close(again.mask_logits, first.mask_logits)
    with pytest.raises(PromptError):
        model.segment(states, None, inputs.frame_size)


def test_prefix_cache_prefills_only_the_new_tokens(model, processor):
    frames = _frames(4, seed=5)
    turn1 = [P.video_message("Please segment the red box.", 4, 6272, 12544)]
    inputs = processor(frames, turn1)
    first = model.generate(inputs, max_new_tokens=5, stop_token_ids=[])
    answer = processor.decode(first.generated_ids.tolist())
    turn2 = [*turn1, {"role": "assistant", "content": answer}, {"role": "user", "content": "And the other one?"}]
    inputs2 = processor.with_messages(inputs, turn2)
    full = model.generate(inputs2, max_new_tokens=4, stop_token_ids=[])
    reused = model.generate(inputs2, max_new_tokens=4, stop_token_ids=[], prefix=first.cache)
    assert reused.prefill.prefix_length >= inputs.input_ids.numel()  # at least the whole first prompt is reused
    assert reused.prefill.logits.shape[0] == inputs2.input_ids.numel() - reused.prefill.prefix_length
    assert torch.equal(reused.generated_ids, full.generated_ids)
    torch.testing.assert_close(reused.step_logits, full.step_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reused.step_prenorm_hidden, full.step_prenorm_hidden, rtol=1e-4, atol=1e-4)
