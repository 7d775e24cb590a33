"""Batched inference across different media: `model.generate_batch` and `pipe.run_batch` give what one query at a
time gives (answers exactly, numbers within float tolerance), through the Python API, `pixelwise batch` and
`pixelwise eval`."""

import json

import numpy as np
import pytest
import torch

import pixelwise
from pixelwise import Box, Point, Query
from pixelwise.cli import main
from pixelwise.core.media import save_video
from tests.conftest import make_frames
from tests.pipeline.conftest import CHECKPOINT


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return pixelwise.load(CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def frames():
    return make_frames(6)


def _iou(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def test_generate_batch_matches_one_prompt_at_a_time(pipe, frames):
    from pixelwise.models.unipixel.processing_unipixel import video_message

    texts = ["Please segment the red square in this image.", "What is the large blue star in this video?",
             "Please segment the second square from the left."]
    clips = [frames[:1], frames[:4], frames[2:4]]  # prompts of different lengths: the batch is left-padded
    batch = [pipe.processor(f, [video_message(t, num_frames=len(f))], add_generation_prompt=True)
             for f, t in zip(clips, texts)]
    limits = [12, 20, 7]
    one = [pipe.model.generate(b, max_new_tokens=m) for b, m in zip(batch, limits)]
    many = pipe.model.generate_batch(batch, max_new_tokens=limits)
    assert len({int(b.input_ids.numel()) for b in batch}) == 3
    for a, b, m in zip(one, many, limits):
        assert a.generated_ids.tolist() == b.generated_ids.tolist() and len(b.generated_ids) <= m
        torch.testing.assert_close(b.step_logits, a.step_logits, atol=1e-4, rtol=1e-4)
        assert a.seg_token_index == b.seg_token_index
        torch.testing.assert_close(b.seg_states, a.seg_states, atol=1e-3, rtol=1e-4)
    with pytest.raises(pixelwise.PromptError, match="2 max_new_tokens limits for 3 prompts"):
        pipe.model.generate_batch(batch, max_new_tokens=[1, 2])


def test_run_batch_gives_each_query_what_run_gives(pipe, frames, tmp_path):
    save_video(tmp_path / "clip.mp4", make_frames(12), fps=10)
    queries = [
        Query(frames[0], "the red square", max_new_tokens=16),
        Query(str(tmp_path / "clip.mp4"), "the square that moves", num_frames=4, max_new_tokens=16),
        Query(frames[3], "What is [0]?", {0: Point(20, 15)}, task="ask", max_new_tokens=16),
        Query(frames[1], "Which color is [0]?", [Box(5, 5, 30, 30)], task="ask", options=["red", "blue"],
              max_new_tokens=8),
        Query(frames[2], "What is [3]?", task="ask"),  # names no region: an error, the others go on
    ]
    one = []
    for q in queries:
        try:
            one.append(pipe.run(q))
        except pixelwise.PixelwiseError as e:
            one.append(e)
    many = pipe.run_batch(queries, return_errors=True)
    assert isinstance(one[-1], pixelwise.PromptError) and str(many[-1]) == str(one[-1])
    for a, b in zip(one[:-1], many[:-1]):
        assert a.answer == b.answer and a.frame_indices == b.frame_indices and b.extras["batch_size"] == 4
        assert [o.id for o in a.objects] == [o.id for o in b.objects]
        assert all(_iou(x.masks, y.masks) >= 0.99 for x, y in zip(a.objects, b.objects))
    with pytest.raises(pixelwise.PromptError, match="names"):
        pipe.run_batch(queries)
    # an error only the model finds while generating lands on its own query, not on the whole batch
    real = pipe.model.generate
    two = [Query(frames[0], "the red square", max_new_tokens=4), Query(frames[1], "the blue circle and more")]
    bad = pipe.chat(frames[1]).begin("Please segment the blue circle and more in this image.").inputs.input_ids

    def generate(inputs, **kw):
        if torch.equal(inputs.input_ids, bad):
            raise pixelwise.PromptError("this prompt failed")
        return real(inputs, **kw)

    def generate_batch(batch, **kw):
        raise pixelwise.PromptError("the batch failed")

    pipe.model.generate, pipe.model.generate_batch = generate, generate_batch
    try:
        out = pipe.run_batch(two, return_errors=True)
        with pytest.raises(pixelwise.PromptError, match="the batch failed"):
            pipe.run_batch(two)
    finally:
        del pipe.model.generate, pipe.model.generate_batch
    assert out[0].answer == pipe.run(two[0]).answer and str(out[1]) == "this prompt failed"
    with pytest.raises(pixelwise.PromptError, match="task must be"):
        Query(frames[0], "x", task="describe")


def test_batch_size_changes_no_result_of_a_manifest(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for k, f in enumerate(make_frames(3)):
        Image.fromarray(f).save(tmp_path / f"{k}.png")
    manifest = tmp_path / "q.jsonl"
    manifest.write_text("".join(json.dumps(q) + "\n" for q in [
        {"id": "a", "media": "0.png", "text": "the red square"},
        {"id": "b", "media": "1.png", "task": "ask", "text": "What is [0]?",
         "prompts": [{"type": "box", "box": [5, 5, 30, 30]}]},
        {"id": "c", "media": "2.png", "task": "ask", "text": "What is [3]?"},
        {"id": "d", "media": "2.png", "text": "the blue circle", "max_new_tokens": 4},
    ]))
    rows = {}
    for size in (1, 3):
        out = tmp_path / f"b{size}"
        assert main(["batch", str(manifest), "--out", str(out), "--model", str(CHECKPOINT), "--device", "cpu",
                     "--batch-size", str(size)]) == 0
        rows[size] = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for a, b in zip(rows[1], rows[3]):
        for r in (a, b):
            r.pop("timings", None)
            r.get("extras", {}).pop("batch_size", None)
        assert a == b
    assert [r["id"] for r in rows[3]] == ["a", "b", "c", "d"] and "error" in rows[3][2]


def test_eval_batch_size_gives_the_same_predictions_and_metrics(tmp_path, capsys):
    from pixelwise.data.pixelworld.rows import BY_NAME, generate_row

    data = generate_row(tmp_path / "data", "test", BY_NAME["image_referring"], 5, 0)
    reports = []
    for size in (1, 4):
        args = ["eval", "-b", "refcoco:test", "--data", str(data), "--model", str(CHECKPOINT), "--json",
                "--device", "cpu", "--workers", "1", "--pred", str(tmp_path / f"p{size}"), "--batch-size", str(size)]
        assert main(args) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[1]["predicted"] == 5


def test_segment_forces_seg_gives_a_segmentation_request_a_mask_and_leaves_questions_alone(frames):
    """A model that would stop at once (its stop token's logit raised) answers a segmentation request with no
    object; with `segment_forces_seg` the stop becomes `<|seg|>` and a mask comes back, one query at a time and in a
    batch alike; `ask` is never changed."""
    pipe = pixelwise.load(CHECKPOINT, device="cpu")
    stop = pipe.model.default_stop_token_ids()[0]

    def stop_now(_module, _args, out):
        out[..., stop] += 1e4
        return out

    pipe.model.lm_head.register_forward_hook(stop_now)
    assert pipe.segment(frames[0], "the red square", max_new_tokens=8).objects == []
    pipe.model.config.raw["segment_forces_seg"] = True
    one = pipe.segment(frames[0], "the red square", max_new_tokens=8)
    assert len(one.objects) == 1 and one.extras["generated_tokens"] == 2  # <|seg|>, then the stop
    assert pipe.ask(frames[0], "What is this?", max_new_tokens=8).objects == []
    batch = pipe.run_batch([Query(frames[0], "the red square", max_new_tokens=8),
                            Query(frames[1], "What is this?", task="ask", max_new_tokens=8)])
    assert len(batch[0].objects) == 1 and batch[1].objects == []
    assert _iou(batch[0].objects[0].masks, one.objects[0].masks) > 0.99
