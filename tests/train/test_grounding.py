"""What the default model's grounding recipe adds: absolute positions on the visual tokens (tiny-only option), a
model grown from a folder by config overrides, dense grounding conversations, and the per-part PixelWorld measures."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelwise.core.errors import CheckpointError, ConfigError, PromptError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "pixelwise" / "checkpoints" / "unipixel-tiny"


TINY_OPTIONS = ("vision_abs_pos", "seg_retrieval_dim", "region_prompts_to_sam2", "embed_norm", "seg_key_visual",
                "seg_key_objects", "llm_object_view", "region_mentions", "option_links", "option_pointer",
                "region_own_frame", "region_motion", "seg_ground", "seg_ground_words", "seg_ground_geometry")
# options that only exist on top of another: switched off with it
DEPENDENTS = {"seg_ground": ("seg_ground_words", "seg_ground_eyes", "seg_ground_geometry", "seg_ground_width")}


def without(model, *options: str):
    """The same weights with the tiny-only `options` switched off (absent from the config), in eval mode."""
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration

    options = {*options, *(d for o in options for d in DEPENDENTS.get(o, ()))}
    raw = {k: v for k, v in model.config.to_dict().items() if k not in options}
    base = UniPixelForConditionalGeneration(UniPixelConfig.from_dict(raw))
    own = base.state_dict()
    base.load_state_dict({k: v for k, v in model.state_dict().items() if k in own}, strict=True)
    return base.eval()


def default_without(folder: Path, *options: str) -> Path:
    """The default model with the tiny-only `options` switched off, saved as a model folder under `folder`."""
    import shutil

    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import PROCESSOR_FILES

    torch.set_num_threads(1)
    model = without(UniPixelForConditionalGeneration.from_pretrained(DEFAULT), *options)
    folder = folder / "model"
    model.save_pretrained(folder)
    for f in PROCESSOR_FILES:
        if (DEFAULT / f).is_file():
            shutil.copyfile(DEFAULT / f, folder / f)
    return folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """The default model without the tiny-only options (the official architecture at tiny sizes), as a folder."""
    return default_without(tmp_path_factory.mktemp("plain"), *TINY_OPTIONS)


@pytest.fixture(scope="module")
def grown(plain, tmp_path_factory):
    """The plain model grown with `vision_abs_pos` (zero at init), as the recipe's `config_overrides` builds it;
    the run's own model folder describes the grown model."""
    import json

    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D

    run = tmp_path_factory.mktemp("grown")
    cfg = load_config(None, [f"model.init={plain}", "model.config_overrides={vision_abs_pos: 8}"])
    model, processor, folder = build_model(cfg, run, D.DistInfo())
    assert folder == run / "model_init" and json.loads((folder / "config.json").read_text())["vision_abs_pos"] == 8
    return model.eval(), processor


@pytest.fixture(scope="module")
def pw_images(tmp_path_factory):
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("pw") / "img"
    generate(root, GenConfig(split="test", num=3, seed=0, tasks=("referring",)))
    return root


def _inputs(processor, frames, text="Please segment the red circle in this image."):
    from pixelwise.models.unipixel.processing_unipixel import video_message

    return processor(frames, [video_message(text, num_frames=frames.shape[0])], add_generation_prompt=True)


def test_absolute_positions_start_at_zero_and_then_matter(grown, plain, pw_images):
    from pixelwise.core.media import load_media
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    model, processor = grown
    base = UniPixelForConditionalGeneration.from_pretrained(plain)
    frames = load_media(next((pw_images / "media").iterdir())).frames[:]
    inputs = _inputs(processor, frames)
    with torch.no_grad():
        same = torch.equal(model(inputs).logits, base(inputs).logits)
        model.visual_pos_rows.weight[1].fill_(0.5)
        first = model(inputs)
        moved = not torch.allclose(first.logits, base(inputs).logits)
        inputs.vision = first.vision  # a later query on the same frames reuses the tower's output
        reused = torch.allclose(model(inputs).logits, first.logits, atol=1e-5)
        model.visual_pos_rows.weight.zero_()
    assert same and moved and reused
    grid = model.absolute_positions(torch.tensor([[1, 8, 8]]))
    assert grid.shape == (16, model.config.hidden_size)
    assert model.absolute_positions(torch.tensor([[1, 40, 40]])).shape == (400, model.config.hidden_size)


def test_absolute_positions_are_bounded_and_saved(grown, tmp_path):
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration

    model, _ = grown
    raw = model.config.to_dict()
    with pytest.raises(ConfigError, match="vision_abs_pos"):
        UniPixelConfig.from_dict({**raw, "vision_abs_pos": 1 << 20})
    with torch.no_grad():
        model.visual_pos_cols.weight[2].fill_(0.25)
    model.save_pretrained(tmp_path / "m")
    again = UniPixelForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert again.config.vision_abs_pos == 8
    assert torch.equal(again.visual_pos_cols.weight, model.visual_pos_cols.weight)
    # a side longer than the table (a wide frame) reads the table resampled: ends kept, no error
    grid = torch.tensor([[1, 2 * 7, 2 * 10]])  # a 7 x 10 merged grid, 8 positions per side
    pos = model.absolute_positions(grid).view(7, 10, -1)
    rows, cols = model.visual_pos_rows.weight, model.visual_pos_cols.weight
    assert torch.allclose(pos[3, 0], rows[3] + cols[0]) and torch.allclose(pos[3, 9], rows[3] + cols[7])
    assert torch.allclose(pos[0, 3] - rows[0], cols[2] + (cols[3] - cols[2]) * (3 * 7 / 9 - 2), atol=1e-6)
    with torch.no_grad():
        model.visual_pos_cols.weight.zero_()


def test_dense_grounding_names_every_visible_object_in_reading_order(pw_images):
    from pixelwise.core.masks import mask_to_box
    from pixelwise.data.pixelworld.grammar import describe_object
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.data.pixelworld.tasks import BOX_GRID
    from pixelwise.train.unipixel_data import DenseGroundingSource

    src = DenseGroundingSource(pw_images, seg_rate=0.0)
    frames, convs, _ = src.conversations(0, random.Random(0))
    (_, answer), = convs[0].turns
    scene = Scene.from_json(src.scenes[0])
    _, vis, _ = render(scene, [0])
    visible = [k for k in range(vis.shape[0]) if vis[k, 0].sum() >= 12]
    boxes = [[int(v) for v in b.split(",")] for b in re.findall(r"<box>([\d,]+)</box>", answer)]
    assert len(boxes) == len(visible) and frames.shape[0] == 1
    truth = sorted(tuple(round(c * BOX_GRID / 128) for c in mask_to_box(vis[k, 0])) for k in visible)
    assert sorted(map(tuple, boxes)) == truth
    ys = [b[1] * 128 // BOX_GRID // 16 for b in boxes]
    assert ys == sorted(ys)  # top to bottom (rows of 16 px), then left to right

    seg = DenseGroundingSource(pw_images, seg_rate=1.0)
    _, convs, _ = seg.conversations(0, random.Random(0))
    answer = convs[0].turns[0][1]
    assert answer.count("<|seg|>") == convs[0].seg_masks.shape[0] == len(visible)

    mem = DenseGroundingSource(pw_images, seg_rate=0.0, mem_rate=1.0)
    _, convs, _ = mem.conversations(0, random.Random(0))
    answer, regions = convs[0].turns[0][1], convs[0].mem_masks
    assert len(regions) == len(visible) and all(f"[{i}] is " in answer for i in range(len(visible)))
    named = {int(i): name for i, name in re.findall(r"\[(\d+)\] is ([a-z ]+)", answer)}
    for i, (m,) in enumerate(regions):  # region i's mask is the object the answer names for [i]
        k = next(k for k in visible if np.array_equal(vis[k, 0], m.mask))
        assert named[i].strip() == describe_object(scene.objects[k])


def test_kind_breakdown_and_interior_click():
    from pixelwise.recipes.pixelworld_parts import interior_click, kind_breakdown

    samples = [{"task": "referring", "expression": {"kind": k}} for k in ("attr", "relation", "attr")]
    report = {"per_sample": [{"key": "1/0", "I": 5, "U": 10}, {"key": "2/1", "I": 0, "U": 10},
                             {"key": "3/2", "I": 10, "U": 10}]}
    kinds = kind_breakdown(report, samples)
    assert kinds["attr"] == {"cIoU": 0.75, "n": 2} and kinds["relation"] == {"cIoU": 0.0, "n": 1}
    video = {"per_sample": [{"key": "test-000000/0", "J": 0.5, "F": 0.7}, {"key": "test-000002/0", "J": 0.1, "F": 0.3}]}
    assert kind_breakdown(video, samples)["attr"] == {"J&F": pytest.approx(0.4), "n": 2}
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False  # a square ring: the centre is not on the object
    x, y = interior_click(ring)
    assert ring[int(y), int(x)]


def test_sam2_given_the_truth_measures_the_mask_side(pw_images):
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.pixelworld_parts import sam2_upper_bound

    model = UniPixelForConditionalGeneration.from_pretrained(DEFAULT)
    out = sam2_upper_bound(model, pw_images, limit=2)
    refined = hasattr(model.require_sam2(), "mask_refiner")  # the shipped SAM2 refines the kept mask
    for kind in ("box", "click"):
        r = out[kind]
        assert r["n"] == 2 and 0 <= r["frame0_iou"] <= 1 and 0 <= r["frame0_best_of_3"] <= 1
        if not refined:  # the kept candidate is resized differently from the oracle's: allow a hair of difference
            assert r["frame0_iou"] <= r["frame0_best_of_3"] + 0.02
    if refined:  # without the refiner the kept mask is one of the three candidates the oracle sees
        del model.sam2.mask_refiner
        plain_out = sam2_upper_bound(model, pw_images, limit=2)
        for kind in ("box", "click"):
            r = plain_out[kind]
            assert r["frame0_iou"] <= r["frame0_best_of_3"] + 0.02
            assert r["frame0_best_of_3"] == pytest.approx(out[kind]["frame0_best_of_3"])


def test_mask_resolution_bound_is_what_a_perfect_low_res_mask_reaches(pw_images):
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.pixelworld_parts import mask_resolution_bound

    model = UniPixelForConditionalGeneration.from_pretrained(DEFAULT)
    out = mask_resolution_bound(model, pw_images, limit=3)
    assert out["decoder_size"] == model.require_sam2().image_size // 4 and out["n"] == 3
    assert 0.5 < out["mean_iou"] < 0.99  # a 32 x 32 mask cannot draw a 128-px outline exactly
    assert 0.0 <= out["frac_iou_0.8"] <= 1.0


def test_processor_overrides_change_the_frame_budget(plain, tmp_path):
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D

    cfg = load_config(None, [f"model.init={plain}", f"run_dir={tmp_path}",
                             "model.processor_overrides={frame_min_pixels: 50176, frame_max_pixels: 50176}"])
    _, processor, folder = build_model(cfg, tmp_path, D.DistInfo())
    _, _, thw = processor.process_frames(np.zeros((2, 128, 128, 3), np.uint8))
    assert folder == tmp_path / "model_init" and [int(v) for v in thw.reshape(-1)] == [1, 16, 16]  # 8 x 8 merged
    bad = load_config(None, [f"model.init={plain}", "model.processor_overrides={frame_pixels: 1}"])
    with pytest.raises(ConfigError, match="frame_pixels"):
        build_model(bad, tmp_path / "bad", D.DistInfo())


def test_region_prompts_to_sam2_segments_the_region_with_sam2_itself(plain, pw_images):
    import pixelwise
    from pixelwise.core.media import load_media
    from pixelwise.core.prompts import Box, Point
    from pixelwise.models.unipixel.processing_unipixel import ref_prompt

    pipe = pixelwise.load(plain)
    model, processor = pipe.model, pipe.processor
    frames = load_media(next((pw_images / "media").iterdir())).frames[:]
    sam2 = model.require_sam2()
    with torch.no_grad():
        feats = sam2.encode_frames(processor.sam2_frames(frames))
    for region in (Box(30, 20, 70, 60, 0), Point(50, 40, 0)):
        with torch.no_grad():
            _, alone = next(model.region_frames([ref_prompt(region, (128, 128), sam2.image_size)], feats, (128, 128), 1))
        model.config.raw["region_prompts_to_sam2"] = True
        r = pipe.ask(frames, "What is [0]?", regions=[region], max_new_tokens=4)
        assert np.array_equal(r.objects[0].masks[0], (alone.mask_logits[0] > 0).numpy())
        model.config.raw["region_prompts_to_sam2"] = False  # the official path: the <|seg|> state prompts SAM2
        official = pipe.ask(frames, "What is [0]?", regions=[region], max_new_tokens=4)
        assert official.objects[0].masks.shape == r.objects[0].masks.shape


def test_a_region_on_a_later_frame_is_tracked_over_the_whole_clip(plain):
    """SAM2 prompted by a region on frame 2 of 4 tracks it forward, then back to frame 0: every frame once."""
    import pixelwise
    from pixelwise.core.prompts import Point
    from pixelwise.models.unipixel.processing_unipixel import ref_prompt

    pipe = pixelwise.load(plain)
    model, processor = pipe.model, pipe.processor
    frames = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    sam2 = model.require_sam2()
    with torch.no_grad():
        feats = sam2.encode_frames(processor.sam2_frames(frames))
        prompt = ref_prompt(Point(50, 40, 2), (128, 128), sam2.image_size, 4)
        seen = [out.frame_idx for _, out in model.region_frames([prompt], feats, (128, 128), 4)]
    assert seen == [2, 3, 1, 0]


def test_seg_retrieval_clicks_where_the_query_matches(plain):
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
    from pixelwise.models.unipixel.modeling_unipixel import local_soft_argmax
    from pixelwise.train.unipixel_loss import retrieval_loss

    # the click is the softmax-weighted centre of the cells around the best one (never between two far peaks)
    logits = torch.full((1, 16), -30.0)
    logits[0, 5] = 10.0  # cell (1, 1) of a 4 x 4 grid
    logits[0, 15] = 9.9  # a far second candidate is ignored
    assert torch.allclose(local_soft_argmax(logits, 4, 4, 128), torch.tensor([[48.0, 48.0]]), atol=0.1)
    # the loss is smallest when the retrieval puts each cell's share of the target mask on it
    masks = torch.zeros(1, 128, 128, dtype=torch.bool)
    masks[0, 32:64, 32:64] = True  # exactly cell (1, 1)
    good, bad = torch.full((1, 16), -20.0), torch.zeros(1, 16)
    good[0, 5] = 20.0
    assert retrieval_loss(good, masks, (4, 4)) < 1e-3 < retrieval_loss(bad, masks, (4, 4))
    assert retrieval_loss(good, torch.zeros_like(masks), (4, 4)) is None

    base = UniPixelForConditionalGeneration.from_pretrained(plain)
    config = UniPixelConfig.from_dict({**base.config.to_dict(), "seg_retrieval_dim": 16})
    model = UniPixelForConditionalGeneration(config)
    model.load_state_dict(base.state_dict(), strict=False)
    model.eval()
    sam2 = model.require_sam2()
    with torch.no_grad():
        feats = sam2.encode_frames(torch.randn(2, 3, sam2.image_size, sam2.image_size))
        states = torch.randn(3, config.hidden_size)
        prompts, logits = model.seg_prompts(states, feats[0])
        out = model.segment(states, None, (64, 64), features=feats)
        streamed = list(model.segment_frames(states, lambda t: feats[t], (64, 64), num_frames=2))
    grid = feats.embed.shape[-2] * feats.embed.shape[-1]
    assert prompts.shape == (3, 2, sam2.hidden_dim) and logits.shape == (3, grid)
    assert out.masks.shape == (3, 2, 64, 64) and len(streamed) == 2
    assert torch.equal(streamed[1].mask_logits > 0, out.masks[:, 1])


def test_combine_models_takes_only_the_matching_tensors(plain, tmp_path):
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.combine_models import combine

    other = UniPixelForConditionalGeneration.from_pretrained(plain)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    other.save_pretrained(tmp_path / "other")
    taken = combine(plain, tmp_path / "other", r"^sam2\.sam_mask_decoder\.", tmp_path / "out")
    base = dict(UniPixelForConditionalGeneration.from_pretrained(plain).named_parameters())
    got = dict(UniPixelForConditionalGeneration.from_pretrained(tmp_path / "out").named_parameters())
    assert taken and all(k.startswith("sam2.sam_mask_decoder.") for k in taken)
    for n, p in got.items():
        assert torch.equal(p, base[n] + 1.0) if n in taken else torch.equal(p, base[n]), n
    with pytest.raises(CheckpointError, match="no tensor matches"):
        combine(plain, tmp_path / "other", r"^nothing\.", tmp_path / "out2")


def test_embed_norm_puts_visual_and_region_embeddings_on_one_scale(plain, pw_images, tmp_path):
    """`embed_norm` (tiny-only): the visual tokens and the `<|mem|>` memory enter the LLM at RMS 1 (the norm's gain);
    without it (the official architecture) they enter at whatever scale the tower and `msk_proj` give."""
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import DenseGroundingSource, ExampleBuilder

    cfg = load_config(None, [f"model.init={plain}", "model.config_overrides={embed_norm: true}"])
    model, processor, folder = build_model(cfg, tmp_path / "run", D.DistInfo())
    base = UniPixelForConditionalGeneration.from_pretrained(plain).eval()
    assert not hasattr(base, "visual_norm") and model.config.embed_norm
    source = DenseGroundingSource(pw_images, seg_rate=0.0, mem_rate=1.0)
    frames, convs, key = source.conversations(0, random.Random(0))
    ex = ExampleBuilder(processor, video_frames=(1,))(frames, convs[0], random.Random(0), key)
    ids = ex.inputs.input_ids.reshape(-1)
    slots = {"visual": ids == model.config.video_token_id, "memory": ids == model.config.mem_token_id}
    with torch.no_grad():
        normed, _ = model.eval().embed(ex.inputs)
        raw, _ = base.embed(ex.inputs)
    for name, where in slots.items():
        assert where.any(), name
        rms = normed[0, where].pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), atol=1e-3), name
        assert not torch.allclose(raw[0, where].pow(2).mean(-1).sqrt(), torch.ones_like(rms), atol=0.1), name
    text = ~(slots["visual"] | slots["memory"])
    assert torch.equal(normed[0, text], raw[0, text])
    model.save_pretrained(tmp_path / "m")
    again = UniPixelForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert again.config.embed_norm and torch.equal(again.region_norm.weight, model.region_norm.weight)


def test_visual_words_label_each_token_with_its_object_and_reward_naming_it(plain, pw_images):
    """Each visual token is labelled with the colour and shape of the object covering its cell (from the scene
    graph); the loss is low exactly when the token points at those words' embeddings."""
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor
    from pixelwise.train.unipixel_data import PixelWorldSource, UniPixelTrainDataset, visual_word_labels, word_classes
    from pixelwise.train.unipixel_loss import visual_words_loss

    processor = UniPixelProcessor.from_pretrained(plain)
    names, ids = word_classes(processor)
    source = PixelWorldSource(pw_images)
    scene = Scene.from_json(source.scene(0))
    labels = visual_word_labels(scene, [0], torch.tensor([[1, 8, 8]]), (names, ids))
    assert labels.shape == (16, 2) and (labels >= 0).any() and (labels == -1).any()
    expected = {(names[0].index(o.color), names[1].index(o.shape)) for o in scene.objects}
    assert {tuple(v) for v in labels[labels[:, 0] >= 0].tolist()} <= expected

    ex = UniPixelTrainDataset(source, processor, visual_words=True)[0]
    assert ex.visual_words is not None and all(torch.equal(a, b) for a, b in zip(ex.visual_word_ids, ids))
    emb = UniPixelForConditionalGeneration.from_pretrained(plain).language_model.embed_tokens.weight
    keep = ex.visual_words[:, 0] >= 0
    naming = emb[ids[0][ex.visual_words[:, 0].clamp(min=0)]] + emb[ids[1][ex.visual_words[:, 1].clamp(min=0)]]
    random_tokens = torch.randn_like(naming)
    good = visual_words_loss(naming[keep], ex.visual_words[keep], emb, ids, 0.1)
    bad = visual_words_loss(random_tokens[keep], ex.visual_words[keep], emb, ids, 0.1)
    assert good < 0.5 * bad
    assert visual_words_loss(naming[~keep], ex.visual_words[~keep], emb, ids, 0.1) is None


def test_memory_words_label_each_region_with_its_object(plain, pw_images):
    """A dense region-naming conversation ("[0] is a small red circle, ..."): each `<|mem|>` token is labelled with
    the colour and shape its answer names."""
    from pixelwise.models.unipixel import UniPixelProcessor
    from pixelwise.train.unipixel_data import DenseGroundingSource, UniPixelTrainDataset, word_classes

    processor = UniPixelProcessor.from_pretrained(plain)
    names, _ = word_classes(processor)
    source = DenseGroundingSource(pw_images, seg_rate=0.0, mem_rate=1.0)
    ex = UniPixelTrainDataset(source, processor, visual_words=True)[0]
    ids = ex.inputs.input_ids.reshape(-1)
    assert ex.mem_words is not None and len(ex.mem_words) == int((ids == processor.token_id("<|mem|>")).sum())
    answer = processor.decode(ids[ex.labels_mask.reshape(-1)].tolist())
    told = re.findall(r"\[(\d+)\] is an? ([a-z ]+?)(?:,|\.)", answer)
    assert len(told) == len(ex.mem_words)
    for (_, name), (c, s) in zip(told, ex.mem_words.tolist()):
        assert names[0][c] in name.split() and names[1][s] in name.split(), (name, names[0][c], names[1][s])


def test_input_dependence_measures_what_taking_the_inputs_away_costs(plain, pw_images):
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor
    from pixelwise.recipes.pixelworld_parts import input_dependence

    model = UniPixelForConditionalGeneration.from_pretrained(plain).eval()
    report = input_dependence(model, UniPixelProcessor.from_pretrained(plain), pw_images, limit=2)
    for part in ("visual", "memory"):
        r = report[part]
        assert r["n"] == 2 and all(np.isfinite(r[k]) for k in ("as is", "zeroed", "shuffled"))
        assert r["zeroed"] != r["as is"]  # the hook reaches the model's inputs


def test_letter_choice_reads_the_letter_at_each_answer(plain, pw_images):
    """Every option question of the scenes is scored once, at its own letter; a model biased towards one letter
    wins with it everywhere, so the probe tells a constant answer from a read one."""
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor
    from pixelwise.recipes.pixelworld_parts import letter_choice

    model = UniPixelForConditionalGeneration.from_pretrained(plain).eval()
    processor = UniPixelProcessor.from_pretrained(plain)
    report = letter_choice(model, processor, pw_images, limit=3)
    n = sum(v["n"] for k, v in report.items() if k != "wins")
    assert n == sum(report["wins"].values()) and 6 <= n <= 12  # 3 scenes x up to 4 questions
    c = processor.tokenizer.token_to_id("C")

    def favour_c(_module, _args, logits):  # a model that always prefers C
        logits = logits.clone()
        logits[..., c] += 100.0
        return logits

    handle = model.lm_head.register_forward_hook(favour_c)
    try:
        assert letter_choice(model, processor, pw_images, limit=3)["wins"] == {"C": n}
    finally:
        handle.remove()


def test_scene_questions_are_answered_by_the_scene_alone(pw_images):
    """Every packed question's answer is true of the rendered scene (colour of a unique shape, shape of a unique
    colour, counts, presence), and the questions vary with the scene, not the answers with the question."""
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.train.unipixel_data import NUMBER_WORDS, SceneQuestionSource

    source = SceneQuestionSource(pw_images, turns=6)
    checked = 0
    for i in range(len(source)):
        scene = Scene.from_json(source.scene(i))
        _, vis, _ = render(scene, [0])
        seen = [o for k, o in enumerate(scene.objects) if vis[k, 0].sum() >= 12]
        frames, convs, _ = source.conversations(i, random.Random(i))
        assert frames.shape[0] == 1 and len(convs) == 1 and 1 <= len(convs[0].turns) <= 6
        for q, a in convs[0].turns:
            if m := re.fullmatch(r"What color is the (\w+)\?", q):
                (o,) = [o for o in seen if o.shape == m[1]]
                assert a == f"It is {o.color_at(0)}."
            elif m := re.fullmatch(r"What shape is the (\w+) object\?", q):
                (o,) = [o for o in seen if o.color_at(0) == m[1]]
                assert a == f"It is a {o.shape}."
            elif m := re.fullmatch(r"How many (\w+) objects are there\?", q):
                assert a == NUMBER_WORDS[sum(o.color_at(0) == m[1] for o in seen)] + "."
            elif m := re.fullmatch(r"Is there a (\w+) (\w+)\?", q):
                there = any(o.color_at(0) == m[1] and o.shape == m[2] for o in seen)
                assert a == ("Yes." if there else "No.")
            else:
                raise AssertionError(q)
            checked += 1
    assert checked >= 6


def test_region_choice_questions_match_their_regions(pw_images):
    """Each option question names a region whose mask is that object's, the right option is true of it, the three
    others are not, and the answer is in the benchmark's form; the letters and the region ids vary."""
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.data.templates import MC_PRIME
    from pixelwise.train.unipixel_data import COUNT_OPTIONS, RegionChoiceSource

    source = RegionChoiceSource(pw_images, turns=5)
    letters, ids = set(), set()
    for i in range(len(source)):
        scene = Scene.from_json(source.scene(i))
        _, vis, _ = render(scene, [0])
        frames, (conv,), _ = source.conversations(i, random.Random(i))
        assert frames.shape[0] == 1 and len(conv.turns) >= 3
        owner = []  # region id -> the object whose mask it is
        for (m,) in conv.mem_masks:
            (k,) = [k for k in range(len(scene.objects)) if np.array_equal(vis[k, 0], np.asarray(m.mask))]
            owner.append(k)
        for q, a in conv.turns:
            head, opts = q.split("\nOptions:\n")
            options = dict(re.findall(r"\(([ABCD])\) (\w+)", opts))
            assert len(options) == 4 and len(set(options.values())) == 4
            letter, word = re.fullmatch(re.escape(MC_PRIME) + r"([ABCD])\) (\w+)\.", a).groups()
            assert options[letter] == word
            region = int(re.search(r"\[(\d+)\]", head)[1])
            o = scene.objects[owner[region]]
            if head.startswith("What color"):
                truth = o.color_at(0)
            elif head.startswith("What shape"):
                truth = o.shape
            else:
                same = sum(1 for k in owner if k != owner[region] and scene.objects[k].color_at(0) == o.color_at(0))
                truth = COUNT_OPTIONS[same]
            assert word == truth and list(options.values()).count(truth) == 1
            letters.add(letter)
            ids.add(region)
    assert len(letters) >= 3 and len(ids) >= 3


def test_region_open_questions_describe_the_region_they_name(pw_images):  # noqa: F811
    from pixelwise.data.pixelworld.grammar import describe_object
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.train.unipixel_data import RegionChoiceSource

    source = RegionChoiceSource(pw_images, turns=6, open_rate=1.0)
    for i in range(len(source)):
        scene = Scene.from_json(source.scene(i))
        _, vis, _ = render(scene, [0])
        _, (conv,), _ = source.conversations(i, random.Random(i))
        for q, a in conv.turns:
            region = int(re.search(r"\[(\d+)\]", q)[1])
            (k,) = [k for k in range(len(scene.objects))
                    if np.array_equal(vis[k, 0], np.asarray(conv.mem_masks[region][0].mask))]
            assert "Options" not in q and a == f"[{region}] is {describe_object(scene.objects[k])}."
    hinted = RegionChoiceSource(pw_images, turns=4, hint_rate=1.0)
    _, (conv,), _ = hinted.conversations(0, random.Random(0))
    for q, a in conv.turns:  # the question states the answer the option gives
        stated = re.match(r"\[(\d+)\] is (\w+)\. ", q)
        assert stated and f"[{stated[1]}]?" in q.split("\n")[0] and a.endswith(f") {stated[2]}.")


def test_seg_key_visual_starts_neutral_then_keys_read_the_visual_tokens(plain, pw_images):
    """`seg_key_visual` (tiny-only): the retrieval keys also read the first frame pair's visual tokens. Zero at init
    (a trained model's clicks are unchanged); the retrieval loss then trains the tower through the keys; a model with
    the option refuses to locate without the tokens; the public API carries them."""
    from pixelwise.core.media import load_media
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
    from pixelwise.models.unipixel.pipeline_unipixel import UniPixelPipeline
    from pixelwise.train.unipixel_loss import retrieval_loss

    base = UniPixelForConditionalGeneration.from_pretrained(plain)
    raw = base.config.to_dict()
    models = {}
    for on in (False, True):
        torch.manual_seed(0)
        models[on] = UniPixelForConditionalGeneration(
            UniPixelConfig.from_dict({**raw, "seg_retrieval_dim": 16, "seg_key_visual": on}))
    models[True].load_state_dict(models[False].state_dict(), strict=False)
    pipe = UniPixelPipeline.from_pretrained(plain)
    frames = load_media(next((pw_images / "media").iterdir())).frames[:]
    inputs = _inputs(pipe.processor, frames)
    sam2 = models[True].require_sam2()
    with torch.no_grad():
        feats = sam2.encode_frames(inputs.sam2_frames)
    states = torch.randn(2, raw["hidden_size"])
    out = models[True](inputs)
    visual = models[True].retrieval_visual(out.video_embeds, inputs.video_grid_thw)
    m = raw["vision_config"]["spatial_merge_size"]
    grid = inputs.video_grid_thw.reshape(-1)
    assert visual.shape == (int(grid[1]) // m, int(grid[2]) // m, raw["hidden_size"])
    assert models[False].retrieval_visual(out.video_embeds, inputs.video_grid_thw) is None
    with torch.no_grad():
        _, plain_logits = models[False].seg_prompts(states, feats[0])
    _, logits = models[True].seg_prompts(states, feats[0], visual)
    assert torch.allclose(logits, plain_logits, atol=1e-5)
    with pytest.raises(PromptError, match="visual tokens"):
        models[True].seg_prompts(states, feats[0])

    target = torch.zeros(2, sam2.image_size, sam2.image_size, dtype=torch.bool)
    target[:, :32, :32] = True
    retrieval_loss(logits, target, feats.embed.shape[-2:]).backward()
    assert models[True].seg_key_vis[1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        models[True].seg_key_vis[1].weight.normal_()
    models[True].zero_grad()
    out = models[True](inputs)
    visual = models[True].retrieval_visual(out.video_embeds, inputs.video_grid_thw)
    _, logits = models[True].seg_prompts(states, feats[0], visual)
    retrieval_loss(logits, target, feats.embed.shape[-2:]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in models[True].visual.parameters())

    pipe.model = models[True].eval()
    result = pipe.segment(frames[0], "the red circle")
    assert all(o.masks.shape[-2:] == frames.shape[1:3] for o in result.objects)


def test_region_motion_questions_span_the_clip_and_are_true_of_their_regions(tmp_path_factory):
    """Questions across a clip about regions given on frames spread over it: each region's masks are one object's,
    the answer is in the benchmark's form and true of that object (its direction from the trajectory); an image folder
    is refused."""
    from pixelwise.core.errors import ConfigError
    from pixelwise.data.pixelworld.generate import GenConfig, generate
    from pixelwise.data.pixelworld.grammar import motion_facts
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.data.pixelworld.tasks import DIRECTION_WORDS
    from pixelwise.data.templates import MC_PRIME
    from pixelwise.train.unipixel_data import RegionMotionSource

    clips = tmp_path_factory.mktemp("clips")
    generate(clips, GenConfig(split="train", num=6, seed=0, video=True, tasks=("region",)))
    source = RegionMotionSource(clips, turns=6)
    kinds, checked = set(), 0
    for i in range(len(source)):
        scene = Scene.from_json(source.scene(i))
        _, vis, _ = render(scene)
        frames, convs, _ = source.conversations(i, random.Random(i))
        assert frames.shape[0] == scene.num_frames
        for conv in convs:
            owner = []
            for masks in conv.mem_masks:
                assert len({m.frame for m in masks}) >= 2  # the memory spans the clip
                (k,) = {k for k in range(len(scene.objects)) if np.array_equal(vis[k, masks[0].frame], masks[0].mask)}
                assert all(np.array_equal(vis[k, m.frame], m.mask) for m in masks)
                owner.append(k)
            for q, a in conv.turns:
                head, opts = q.split("\nOptions:\n")
                options = dict(re.findall(r"\(([ABCD])\) ([^\n]+)", opts))
                letter, word = re.fullmatch(re.escape(MC_PRIME) + r"([ABCD])\) (.+)\.", a).groups()
                assert len(options) == 4 and options[letter] == word
                o = scene.objects[owner[int(re.search(r"\[(\d+)\]", head)[1])]]
                if head.startswith("In which direction"):
                    kinds.add("direction")
                    facts = motion_facts(scene)[o.id]
                    assert facts[next(f for f, w in DIRECTION_WORDS.items() if w == word)] is True
                    checked += 1
                elif head.startswith("What shape"):
                    kinds.add("shape")
                    assert word == o.shape
                else:
                    kinds.add(head.split()[0])
    assert checked and len(kinds) >= 3
    with pytest.raises(ConfigError, match="needs video scenes"):
        RegionMotionSource(_image_folder(tmp_path_factory)).conversations(0, random.Random(0))


def _image_folder(tmp_path_factory):
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("images")
    generate(root, GenConfig(split="train", num=2, seed=0, tasks=("region",)))
    return root


def test_over_every_frame_a_prompted_region_is_tracked_from_its_own_prompt():
    """`propagate="all"` with a box on a later frame read: the region's masks are SAM2's track from that box over
    every frame of the media, back to frame 0 (not a re-track from the localization state on frame 0)."""
    import pixelwise
    from pixelwise.core.masks import mask_to_box
    from pixelwise.core.media import load_media
    from pixelwise.core.prompts import Box
    from pixelwise.models.unipixel.processing_unipixel import ref_prompt

    pipe = pixelwise.load(DEFAULT)
    clip = Path(__file__).resolve().parents[2] / "examples" / "pixelworld_clip.mp4"
    found = pipe.segment(str(clip), "the red circle", num_frames=8)
    k = 5  # the sixth frame read
    x1, y1, x2, y2 = mask_to_box(np.asarray(found.objects[0].masks[k]))
    r = pipe.ask(str(clip), "What color is [0]?", regions=[Box(x1, y1, x2, y2, k)], num_frames=8, propagate="all",
                 max_new_tokens=4)
    media = load_media(str(clip))
    assert r.frame_indices == list(range(media.num_frames))
    region = np.asarray(r.objects[0].masks)
    at = found.extras["frames_read"][k]
    assert region[:at].any(axis=(1, 2)).all()  # every frame before the prompt's has the object
    sam2 = pipe.model.require_sam2()
    with torch.no_grad():
        feats = [sam2.encode_frames(pipe.processor.sam2_frames(media.frames[t: t + 1]))[0]
                 for t in range(media.num_frames)]
        prompt = ref_prompt(Box(x1, y1, x2, y2, at), region.shape[1:], sam2.image_size, media.num_frames)
        alone = {out.frame_idx: (out.mask_logits[0] > 0).numpy()
                 for _, out in pipe.model.region_frames([prompt], feats, region.shape[1:], media.num_frames)}
    assert all(np.array_equal(region[t], alone[t]) for t in range(media.num_frames))
