"""Processor pieces: smart-resize, patch layout, chat template, SAM2 transform, <|ref|> and <|mem|> builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelwise.core.errors import MediaError, PromptError
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.models.unipixel import processing_unipixel as P

from .conftest import CHECKPOINT


@pytest.mark.parametrize(
    "h,w,lo,hi",
    [(100, 150, 6272, 75264), (90, 120, 6272, 12544), (480, 640, 100352, 200704), (20, 30, 100352, 602112),
     (1080, 1920, 3136, 12845056), (31, 2000, 3136, 602112)],
)
def test_smart_resize_rule(h, w, lo, hi):
    rh, rw = P.smart_resize(h, w, 28, lo, hi)
    assert rh % 28 == 0 and rw % 28 == 0 and rh >= 28 and rw >= 28
    assert rh * rw <= max(hi, 28 * 28)
    assert rh * rw >= lo or rh * rw > hi / 4  # up-scaled to the minimum unless the maximum forbids it
    assert abs(rw / rh - w / h) / (w / h) < 0.5


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(MediaError):
        P.smart_resize(10, 3000)


def test_resize_pads_to_even_frames_and_patchify_layout():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 60, 90, 3), dtype=np.uint8)
    llm = P.resize_for_llm(frames, 3136, 56 * 84)
    assert llm.shape == (4, 56, 84, 3) and np.array_equal(llm[3], llm[2])
    pv, thw = P.patchify(llm)
    assert thw.tolist() == [[2, 4, 6]] and pv.shape == (2 * 4 * 6, 3 * 2 * 14 * 14)
    # Row r of the patches: temporal group t, merge block (bh, bw), position (i, j) inside it (raster over blocks).
    x = (torch.from_numpy(llm).permute(0, 3, 1, 2).float() - torch.tensor(P.OPENAI_CLIP_MEAN).view(1, 3, 1, 1) * 255)
    x = x / (torch.tensor(P.OPENAI_CLIP_STD).view(1, 3, 1, 1) * 255)
    t, bh, bw, i, j = 1, 1, 2, 1, 0
    row = ((t * 2 + bh) * 3 + bw) * 4 + i * 2 + j
    y0, x0 = (bh * 2 + i) * 14, (bw * 2 + j) * 14
    expected = x[2 * t:2 * t + 2, :, y0:y0 + 14, x0:x0 + 14].permute(1, 0, 2, 3).reshape(-1)
    torch.testing.assert_close(pv[row], expected, rtol=0, atol=1e-5)


def test_patchify_rejects_unresized_frames():
    with pytest.raises(MediaError):
        P.patchify(np.zeros((2, 30, 56, 3), np.uint8))


def test_sam2_transform_shape_and_normalisation():
    frames = np.full((2, 30, 40, 3), 255, np.uint8)
    out = P.sam2_transform(frames, 64)
    assert out.shape == (2, 3, 64, 64)
    expected = (1 - torch.tensor(P.IMAGENET_MEAN)) / torch.tensor(P.IMAGENET_STD)
    torch.testing.assert_close(out[0, :, 5, 5], expected)


def test_render_chat_matches_checkpoint_template():
    import jinja2

    template = jinja2.Environment().from_string((CHECKPOINT / "chat_template.jinja").read_text())
    messages = [
        P.video_message("Please segment the cat.", 3),
        {"role": "assistant", "content": "Sure, it is <|seg|>."},
        {"role": "user", "content": [{"type": "text", "text": "And the dog?"}]},
    ]
    for gen in (True, False):
        assert P.render_chat(messages, add_generation_prompt=gen) == template.render(
            messages=messages, add_generation_prompt=gen)
    assert P.render_chat(messages[:1], assistant_prefix="The best option is (").endswith(
        "<|im_start|>assistant\nThe best option is (")


def test_processor_call_expands_video_tokens(processor):
    frames = np.zeros((1, 100, 150, 3), np.uint8)
    inputs = processor(frames, [P.video_message("hi", 1, 6272, 75264)])
    n = int(inputs.video_grid_thw.prod()) // 4
    assert int((inputs.input_ids == processor.token_id("<|video_pad|>")).sum()) == n
    assert inputs.llm_frames.shape[0] == 2 and inputs.sam2_frames.shape[0] == 1  # image -> 2-frame video; SAM2: 1
    assert float(inputs.second_per_grid_ts) == 1.0
    with pytest.raises(PromptError):
        processor.expand_vision("no placeholder", inputs.video_grid_thw)


def test_special_tokens_are_single_ids(processor):
    ids = processor.encode("[0] <|ref|> [1] <|seg|> <|mem|>")
    for tok in ("<|ref|>", "<|seg|>", "<|mem|>"):
        assert processor.token_id(tok) in ids


def test_ref_prompt_scaling_and_labels():
    p = P.ref_prompt(Point(75, 50, frame=2), (100, 150), 128, num_frames=4)
    assert p.frame == 2 and p.labels.tolist() == [[1]] and not p.is_box
    torch.testing.assert_close(p.coords, torch.tensor([[[64.0, 64.0]]]))
    b = P.ref_prompt(Box(0, 0, 150, 100, frame=1), (100, 150), 128, num_frames=4)
    assert b.is_box and b.labels.tolist() == [[2, 3]] and b.coords[0, 1].tolist() == [128.0, 128.0]
    assert P.ref_text(3) == "[3] <|ref|>"
    with pytest.raises(PromptError):
        P.ref_prompt(Point(10, 10, frame=5), (100, 150), 128, num_frames=4)
    with pytest.raises(PromptError):
        P.ref_prompt(Point(10, 10, positive=False), (100, 150), 128)


def test_memory_prompt_odd_frame_count():
    h, w = 56, 84
    m0 = np.zeros((h, w), bool)
    m0[10:30, 10:40] = True
    m1 = np.zeros((h, w), bool)
    m1[40:50, 60:80] = True
    label = P.masks_for_memory([[MaskPrompt(m0, 0), MaskPrompt(m0, 4)], [MaskPrompt(m1, 3)]], 5, (h, w))
    pooled = P.pool_label_mask(label)
    assert pooled.shape == (3, 2, h, w)  # 5 frames -> padded to 6 -> 3 pairs
    assert pooled[2, 0].any() and pooled[1, 1].any() and not pooled[0, 1].any()
    refer = P.refer_mask_from_pooled(pooled, torch.tensor([[3, 4, 6]]))
    assert refer.shape == (3, 2, 2, 3) and refer.dtype == torch.bool
    text = P.mem_prefix(refer, num_frames=5, is_image=False)
    assert text == ("Here is a video with 5 frames denoted as <1> to <5>. The highlighted regions are as follows:\n"
                    "[0]: <1>-<2> <|mem|> <5>-<6> <|mem|>\n[1]: <3>-<4> <|mem|>\n")
    assert P.mem_prefix(refer[:1, :1], 1, is_image=True, object_ids=[7]) == (
        "Here is an image with the following highlighted regions:\n[7]: <|mem|>\n")
    with pytest.raises(PromptError):
        P.masks_for_memory([[MaskPrompt(np.zeros((h, w), bool), 0)]], 1, (h, w))


def test_decode_answer_spans(processor):
    seg = processor.token_id("<|seg|>")
    end = processor.token_id("<|im_end|>")
    ids = processor.encode("The target is ") + [seg] + processor.encode(" and ") + [seg] + processor.encode(".") + [end]
    text, spans = processor.decode_answer(ids, stop_token_ids=[end])
    assert text == "The target is <|seg|> and <|seg|>."
    assert [text[a:b] for a, b in spans] == ["<|seg|>", "<|seg|>"] and spans[0][0] == len("The target is ")


def test_ref_prompts_from_masks_match_the_vectors():
    """The vectors' point/box prompts were derived from the object masks like the official PixelQA evaluation."""
    from safetensors.torch import load_file

    from .conftest import VECTORS

    case = load_file(str(VECTORS / "case_e_video_ref_point_box.safetensors"))
    masks = load_file(str(VECTORS / "media.safetensors"))["video.obj_masks"].numpy()
    frames = case["in.point_frames"].tolist()
    for obj, kind in ((0, "point"), (1, "box")):
        prompt = MaskPrompt(masks[frames[obj], obj], frames[obj])
        ref = P.ref_prompt_from_mask(prompt, kind, 128, num_frames=masks.shape[0])
        assert ref.coords.tolist() == case[f"in.point_coords.{obj}"].float().tolist()
        assert ref.labels.tolist() == case[f"in.point_labels.{obj}"].tolist() and ref.frame == frames[obj]
