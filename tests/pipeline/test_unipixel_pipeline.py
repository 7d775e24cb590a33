"""`pixelwise.load` + the UniPixel pipeline: what a user of segment / ask / chat / predict notices."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import pixelwise
from pixelwise.core.clip import Clip
from pixelwise.core.errors import CheckpointError, ConfigError, MediaError, PromptError
from pixelwise.core.masks import load_mask_png
from pixelwise.core.media import save_video, uniform_indices
from pixelwise.core.prompts import Box, MaskPrompt, Point
from tests.conftest import make_frames

from .conftest import CHECKPOINT

H, W = 48, 64


def count_encoded(pipe):
    pipe.model.sam2.encoded_frame_count = 0
    return lambda: pipe.model.sam2.encoded_frame_count


def square(t: int = 0) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[10:26, 4 + 3 * t:20 + 3 * t] = True
    return m


# ---------------------------------------------------------------------------------------------------- loading


def test_load_a_hub_id_from_the_cache_offline(tmp_path, monkeypatch):
    """A repo id resolves to its snapshot in the Hugging Face cache (layout of huggingface_hub), no network."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--PolyU-ChenLab--UniPixel-Tiny"
    shutil.copytree(CHECKPOINT, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = pixelwise.load("PolyU-ChenLab/UniPixel-Tiny")
    assert pipe.info()["family"] == "unipixel"
    assert pixelwise.load(f"PolyU-ChenLab/UniPixel-Tiny@{commit}", local_files_only=True).info()["family"] == "unipixel"
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        pixelwise.load("PolyU-ChenLab/UniPixel-Tiny@v9")


def test_load_and_info(pipe):
    info = pipe.info()
    assert info["family"] == "unipixel" and info["name"] == "checkpoint" and info["device"] == "cpu"
    assert info["dtype"] == "float32" and info["parameters"] == sum(p.numel() for p in pipe.model.parameters())
    assert pipe.model.language_model.config._attn_implementation == "sdpa"


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(CheckpointError, match="PolyU-ChenLab/UniPixel-3B: not a local folder and not in the Hugging "
                                              "Face cache; `hf download PolyU-ChenLab/UniPixel-3B`"):
        pixelwise.load("PolyU-ChenLab/UniPixel-3B")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        pixelwise.load("./no/such/folder")
    with pytest.raises(CheckpointError, match="no config.json"):
        pixelwise.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(CheckpointError, match="'llava' is not supported"):
        pixelwise.load(tmp_path)
    import pixelwise.pipeline as P

    monkeypatch.setattr(P, "DEFAULT_MODEL", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="no default model"):
        pixelwise.load()
    with pytest.raises(ConfigError, match="dtype"):
        pixelwise.load(CHECKPOINT, device="cpu", dtype="int8")
    with pytest.raises(ConfigError, match="threads must be >= 1, got 0"):
        pixelwise.load(CHECKPOINT, device="cpu", threads=0)


def test_load_sets_cpu_threads():
    old = torch.get_num_threads()
    try:
        pixelwise.load(CHECKPOINT, device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_register_family(tmp_path, monkeypatch):
    import pixelwise.pipeline as P

    monkeypatch.setattr(P, "_FAMILIES", dict(P._FAMILIES))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy"}))
    seen = []
    pixelwise.register_family("toy", lambda path, device, dtype: seen.append((path, device, dtype)) or "toy-pipe")
    assert pixelwise.load(tmp_path, device="cpu") == "toy-pipe" and seen == [(tmp_path, "cpu", None)]


# ---------------------------------------------------------------------------------------------------- segment


def test_segment_image_several_objects(pipe, scripted, tmp_path):
    calls = scripted("[0] <|seg|> and [1] <|seg|> next to <|seg|>.")
    image = make_frames(1)[0]
    result = pipe.segment(image, "the red square")
    assert "Please segment the red square in this image." in calls[0].chat_text
    assert result.answer == "[0] <|seg|> and [1] <|seg|> next to <|seg|>."
    assert [o.id for o in result.objects] == [0, 1, 2]  # `[k] <|seg|>` keeps k; a plain <|seg|> takes the next id
    assert all(result.answer[a:b] == "<|seg|>" for a, b in (o.span for o in result.objects))
    assert all(o.masks.shape == (1, H, W) and 0 <= o.score <= 1 for o in result.objects)
    assert result.frame_indices == [0] and result.size == (H, W)
    written = result.save(tmp_path / "out")  # the result knows its frames: the overlay needs no clip argument
    assert written["overlay"].name == "overlay.png"
    assert np.array_equal(load_mask_png(tmp_path / "out" / "masks" / "object1.png"), result.objects[1].masks[0])


def test_three_objects_on_16_frames_encode_each_frame_once(pipe, scripted):
    scripted("[0] <|seg|> [1] <|seg|> [2] <|seg|>")
    encoded = count_encoded(pipe)
    result = pipe.segment(make_frames(20), "Segment the squares.", num_frames=16)
    assert len(result.objects) == 3 and encoded() == 16  # one SAM2 batch for the 3 objects, not 48 encodings
    assert result.frame_indices == uniform_indices(20, 16)


def test_templates(pipe, scripted):
    calls = scripted("<|seg|>")
    clip = make_frames(4)
    pipe.segment(clip, "The red square that moves right")
    pipe.segment(clip, "Which square moves right?")
    pipe.segment(clip, "Please segment the red square.")
    texts = [c.chat_text.split("<|vision_end|>")[1].split("<|im_end|>")[0] for c in calls]
    assert texts == ["Please segment the red square that moves right in this video.",
                     "Which square moves right? Please provide the segmentation mask.",
                     "Please segment the red square."]


def test_propagate_over_every_frame(pipe, scripted, tmp_path):
    scripted("<|seg|>")
    video = tmp_path / "clip.mp4"
    save_video(video, make_frames(30), fps=10)
    encoded = count_encoded(pipe)
    steps = []
    result = pipe.segment(str(video), "the red square", num_frames=6, propagate="all",
                          progress=lambda done, total: steps.append((done, total)))
    assert result.frame_indices == list(range(30)) and result.objects[0].masks.shape == (30, H, W)
    assert result.extras["frames_read"] == uniform_indices(30, 6)
    assert encoded() == 30 and steps[-1] == (30, 30) and len(steps) == 30
    assert result.save(tmp_path / "out")["overlay"].name == "overlay.gif"  # frames read again from the file

    sampled = pipe.segment(str(video), "the red square", num_frames=6)
    assert sampled.frame_indices == uniform_indices(30, 6) and sampled.objects[0].masks.shape == (6, H, W)
    # when the model reads every frame, propagating over "all" frames is the same query
    short = make_frames(5)
    a = pipe.segment(short, "the red square", propagate="all")
    b = pipe.segment(short, "the red square")
    assert a.frame_indices == b.frame_indices and np.array_equal(a.objects[0].masks, b.objects[0].masks)


# ---------------------------------------------------------------------------------------------------- ask


def test_ask_with_point_box_and_mask_regions(pipe, scripted, monkeypatch):
    calls = scripted("[0] and [1] are next to [2]: <|seg|>.")
    forwards = []
    real_forward = pipe.model.forward
    monkeypatch.setattr(pipe.model, "forward", lambda inputs: forwards.append(inputs) or real_forward(inputs))
    frames = make_frames(8)
    encoded = count_encoded(pipe)
    regions = [Point(30, 18, frame=3), Box(10, 10, 40, 30, frame=5), MaskPrompt(square(6), frame=6)]
    result = pipe.ask(frames, "What do [0], [1] and [2] have in common?", regions, num_frames=8)

    localize = forwards[0]  # round 1: the point and the box, localized with <|ref|>
    assert "[0] <|ref|>, [1] <|ref|> and [2] have in common? Please localize the relevant objects with IDs." \
        in localize.chat_text
    assert localize.chat_text.endswith("[0] <|seg|> [1] <|seg|><|im_end|>\n")
    assert [p.frame for p in localize.ref_prompts] == [3, 5] and localize.ref_prompts[1].is_box
    question = calls[0].chat_text  # round 2: every region as memory, then the question
    assert "[0]: <1>-<2> <|mem|>" in question and "[2]: <7>-<8> <|mem|>\nWhat do [0]" in question
    assert calls[0].refer_mask.shape[1] == 3
    assert encoded() == 8  # the localization and the answer share one encoding of the 8 frames

    assert [o.id for o in result.objects] == [0, 1, 2, 3]  # the regions, then the answer's <|seg|>
    assert [o.label for o in result.objects[:3]] == ["[0]", "[1]", "[2]"]
    assert np.array_equal(result.objects[2].masks[6], square(6)) and not result.objects[2].masks[:6].any()
    assert result.objects[3].span is not None and result.objects[0].span is None
    assert result.text == "[0] and [1] are next to [2]: [3]."  # the raw answer's <|seg|> read as its object
    # the prompts come back with the result (frames index the result's frames), for drawing
    assert [type(p).__name__ for p in result.prompts] == ["Point", "Box", "MaskPrompt"]
    assert [p.frame for p in result.prompts] == [3, 5, 6]


def test_media_as_the_field_passes_it(pipe, scripted):
    from PIL import Image

    scripted("It is <|seg|>.")
    image = make_frames(1)[0]
    by_array = pipe.segment(image, "the red square")
    for media in (Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1).float() / 255,
                  torch.from_numpy(image)):
        r = pipe.segment(media, "the red square")
        assert r.size == (H, W) and np.array_equal(r.objects[0].masks, by_array.objects[0].masks)
    clip = pipe.segment([Image.fromarray(f) for f in make_frames(3)], "the red square")
    assert clip.frame_indices == [0, 1, 2]
    called = pipe(image, "the red square")  # like a transformers pipeline: segment, or ask with regions
    assert np.array_equal(called.objects[0].masks, by_array.objects[0].masks)
    assert pipe(image, "What is [0]?", [Point(5, 5)]).objects[0].label == "[0]"
    with pytest.raises(MediaError, match="URLs are not fetched; download the file first"):
        pipe.segment("https://example.com/x.png", "x")
    with pytest.raises(MediaError, match="give a path, a PIL image"):
        pipe.segment(3.5, "x")
    with pytest.raises(MediaError, match="differ in size"):
        pipe.segment([image, image[:10]], "x")


def test_ask_multiple_choice(pipe, scripted):
    calls = scripted("B) blue")
    result = pipe.ask(make_frames(2), "What color is [0]?", [Point(10, 15, frame=1)], options=["red", "(B) blue"])
    assert calls[0].chat_text.endswith("What color is [0]?\nOptions:\n(A) red\n(B) blue\n"
                                       "Please only give the best option.<|im_end|>\n"
                                       "<|im_start|>assistant\nThe best option is (")
    assert result.answer == "B) blue" and result.extras["answer_prefix"] == "The best option is ("


def test_region_errors(pipe):
    frames = make_frames(8)
    with pytest.raises(PromptError, match="reads 4 of the media's 8 frames"):
        pipe.ask(frames, "What is [0]?", [Point(5, 5, frame=4)], num_frames=4)
    with pytest.raises(PromptError, match=r"names \[1\], but no such region"):
        pipe.ask(frames, "Is [1] next to [0]?", [Point(5, 5)])
    with pytest.raises(PromptError, match=r"region \[0\] is not named"):
        pipe.ask(frames, "What is it?", [Point(5, 5)])
    with pytest.raises(PromptError, match="outside"):
        pipe.ask(frames, "What is [0]?", [Point(W + 3, 5)])
    with pytest.raises(PromptError, match="does not match"):
        pipe.ask(frames, "What is [0]?", [MaskPrompt(np.ones((5, 5), bool))])
    with pytest.raises(PromptError, match="empty"):
        pipe.ask(frames, "   ")
    with pytest.raises(ConfigError, match="propagate"):
        pipe.segment(frames, "x", propagate="every")


# ---------------------------------------------------------------------------------------------------- chat


def test_chat_reuses_the_encoded_media(pipe, scripted):
    calls = scripted("It is <|seg|>.", "[1] <|seg|> moves.", "Yes.")
    vision_runs = []
    hook = pipe.model.visual.register_forward_hook(lambda *_: vision_runs.append(1))
    try:
        encoded = count_encoded(pipe)
        chat = pipe.chat(make_frames(6), num_frames=6)
        first = chat.send("Please segment the square.")
        second = chat.send("And what does [0] do?", [Point(20, 20, frame=2)])
        chat.send("Is [1] near [0]?", [Box(5, 5, 30, 30, frame=4)])
    finally:
        hook.remove()
    assert len(vision_runs) == 1 and encoded() == 6  # vision tower and SAM2 encoder ran for the first turn only
    assert chat.turns == 3 and chat.region_ids == [0, 1]  # a region list is numbered after earlier regions
    turn2 = calls[1].chat_text
    assert "It is <|seg|>.<|im_end|>" in turn2  # the history holds the first answer
    assert turn2.index("[0]: <1>-<2> <|mem|>") > turn2.index("It is <|seg|>.")  # memory opens the region's turn
    assert re.search(r"\n\[1\]: [^\n]*<\|mem\|>\nIs \[1\] near \[0\]\?", calls[2].chat_text)
    assert calls[2].refer_mask.shape[1] == 2  # both regions' memories: the <|mem|> of turn 2 stay in the history
    assert [o.id for o in first.objects] == [0]
    # turn 2: its region, then its own answer object (the first turn's <|seg|> is not segmented again)
    assert [o.id for o in second.objects] == [0, 1] and second.objects[1].span is not None


def test_chat_turns_prefill_only_their_new_tokens(pipe, monkeypatch):
    prefilled = []
    real = pipe.model._run_llm
    monkeypatch.setattr(pipe.model, "_run_llm", lambda e, *a: (prefilled.append(e.shape[1]), real(e, *a))[1])
    chat = pipe.chat(make_frames(4), num_frames=4)
    chat.send("Please segment the square.", max_new_tokens=3)
    first_prompt = prefilled[0]
    prefilled.clear()
    chat.send("Why?", max_new_tokens=3)
    assert prefilled[0] < 20 < first_prompt  # the new user turn only, not the frames' ~100 tokens again


# ---------------------------------------------------------------------------------------------------- eval


def test_predict_videorefer_sample(pipe, scripted, tmp_path):
    from pixelwise.eval import runner
    from tests.formats import builders as B

    scripted("A) moving right")
    d = B.build_videorefer(tmp_path / "data")
    report = runner.run("pixelqa", d["root"], pipe, tmp_path / "pred")
    assert report["predicted"] == 2 and report["metrics"]["Acc"] == 50.0  # "A" is right for one of the two
    result = pixelwise.Result.load(tmp_path / "pred" / "0.json")
    assert result.num_frames == 6 and result.objects[0].id == 0  # region 0 answers object 0, on every frame


def test_predict_reads_the_prompted_frame(pipe, scripted):
    from pixelwise.data.formats.sample import Sample

    scripted("A")
    clip = Clip(make_frames(40), fps=10)

    class Sampled(Sample):
        def clip(self):
            return clip

    sample = Sampled(key="q", text="What is <object3><region> doing?", frames=[], frame_names=[str(i) for i in range(40)],
                     size=(H, W), prompts=[Point(20, 15, frame=37)], options=["(A) x", "(B) y"], answer="(A) x")
    result = pipe.predict(sample)
    assert 37 in result.extras["frames_read"] and len(result.extras["frames_read"]) == 16
    assert result.num_frames == 40 and result.objects[0].id == 3 and "What is [3] doing?" in result.extras["question"]


def test_bfloat16_runs(scripted):
    bf = pixelwise.load(CHECKPOINT, device="cpu", dtype="bf16")
    assert bf.info()["dtype"] == "bfloat16"
    result = bf.segment(make_frames(2), "the red square", max_new_tokens=2)
    assert result.frame_indices == [0, 1] and torch.get_default_dtype() == torch.float32


# ---------------------------------------------------------------------------------------------------- segment_many


def test_segment_many_answers_as_separate_queries_with_a_shared_prefill(pipe, monkeypatch):
    clip = make_frames(6)
    texts = ["the red square", "the blue circle that moves", "a dog"]
    alone = [pipe.segment(clip, t, num_frames=4, max_new_tokens=6) for t in texts]
    lengths = []
    run_llm = pipe.model._run_llm

    def spy(embeds, pos, cache=None):
        lengths.append(embeds.shape[1])
        return run_llm(embeds, pos, cache)

    monkeypatch.setattr(pipe.model, "_run_llm", spy)
    many = pipe.segment_many(clip, texts, num_frames=4, max_new_tokens=6)
    assert [r.answer for r in many] == [r.answer for r in alone]
    assert [r.extras["question"] for r in many] == [r.extras["question"] for r in alone]
    prefills = [n for n in lengths if n > 1]  # decode steps feed one token
    full = alone[0].extras.get("prompt_tokens") or prefills[0]
    assert len(prefills) == 3 and prefills[0] == full and max(prefills[1:]) < full / 2  # frames not recomputed
    with pytest.raises(PromptError, match="list of texts"):
        pipe.segment_many(clip, "the red square")


def test_segment_many_encodes_the_frames_once_for_every_query(pipe, scripted):
    scripted("It is <|seg|>.")
    clip = make_frames(6)
    alone = [pipe.segment(clip, t, num_frames=6) for t in ("the red square", "the blue square")]
    encoded = count_encoded(pipe)
    many = pipe.segment_many(clip, ["the red square", "the blue square"], num_frames=6)
    assert encoded() == 6  # not 12
    for a, b in zip(alone, many):
        assert len(b.objects) == 1 and np.array_equal(a.objects[0].masks, b.objects[0].masks)


def test_the_default_models_old_folder_name_still_loads():
    from pixelwise.pipeline import DEFAULT_MODEL

    with pytest.warns(DeprecationWarning, match="renamed from pixelworld-tiny"):
        pipe = pixelwise.load(DEFAULT_MODEL.parent / "pixelworld-tiny", device="cpu")
    assert pipe.info()["name"] == "unipixel-tiny"


def test_a_conversation_encodes_an_image_and_proposes_its_objects_once(monkeypatch):
    """The default model's LLM reads SAM2's proposals on the first frame (`llm_object_view`): a conversation on an
    image SAM2-encodes it once and proposes its objects once, whatever its turns and regions need (a point question
    used to encode it three times), with the same answers and masks as computing everything per call."""
    from pixelwise.models.unipixel.pipeline_unipixel import UniPixelChat

    torch.set_num_threads(1)
    pipe = pixelwise.load(device="cpu")
    assert pipe.model.config.llm_object_view
    image = make_frames(1, 96, 128)[0]
    turns = [("Please segment the square.", None), ("What is [0]?", [Point(30, 20)]),
             ("What is [1]?", [Box(4, 8, 40, 40)])]

    def converse():
        chat = pipe.chat(image)
        return [chat.send(text, regions) for text, regions in turns]

    proposals = []
    propose = pipe.model.object_proposals
    monkeypatch.setattr(pipe.model, "object_proposals", lambda *a, **k: proposals.append(1) or propose(*a, **k))
    encoded = count_encoded(pipe)
    shared = converse()
    assert encoded() == 1 and len(proposals) == 1

    def recompute(self, inputs):  # nothing reused but the vision tower's outputs
        inputs.vision = self._vision

    monkeypatch.setattr(UniPixelChat, "_reuse_encodings", recompute)
    encoded, proposals[:] = count_encoded(pipe), []
    alone = converse()
    assert encoded() == 6 and len(proposals) == 5  # per forward: the first turn's and each region's grounding + answer
    for a, b in zip(shared, alone):
        assert a.answer == b.answer and [o.id for o in a.objects] == [o.id for o in b.objects]
        assert all(np.array_equal(np.asarray(x.masks), np.asarray(y.masks)) for x, y in zip(a.objects, b.objects))
