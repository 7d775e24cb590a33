"""`seg_key_objects` (tiny-only): retrieval keys that describe the object SAM2 segments at each cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixelwise.core.errors import PromptError

from pixelwise.models.unipixel.object_keys import ObjectKeys, cell_centres, silhouettes
from tests.train.test_grounding import plain, pw_images  # noqa: F401 (fixtures)


def _square(size: int, top: int, left: int, s: int = 32) -> torch.Tensor:
    m = torch.zeros(s, s)
    m[top: top + size, left: left + size] = 1.0
    return m


def test_silhouettes_see_a_shape_at_one_scale_wherever_it_is():
    small, large = _square(6, 3, 5), _square(12, 16, 10)
    ring = _square(12, 16, 10)
    ring[19:25, 13:19] = 0.0
    crops, (cx, cy, sx, sy, mass) = silhouettes(torch.stack([small, large, ring]), 16)
    a, b, c = (crops[:, 0] > 0.5)
    iou = lambda x, y: float((x & y).sum() / (x | y).sum())  # noqa: E731
    assert iou(a, b) > 0.9 > 0.7 > iou(b, c)  # the same square at two sizes and places; a ring is another shape
    assert torch.allclose(cx[:2], torch.tensor([8 / 32, 16 / 32])) and torch.allclose(mass[:2], torch.tensor([36., 144.]))
    assert torch.allclose(cell_centres(2, 2, 128)[1], torch.tensor([96.0, 32.0]))


def test_object_keys_start_neutral_and_name_what_the_masks_hold():
    torch.manual_seed(0)
    keys = ObjectKeys(visual_dim=8, high_res_dim=4, key_dim=6, width=16, word_dim=8)
    masks = torch.randn(5, 32, 32) * 4
    add, desc = keys(masks, torch.zeros(5), torch.randn(8, 8, 8), torch.randn(4, 32, 32))
    assert add.shape == (5, 6) and desc.shape == (5, 16) and torch.equal(add, torch.zeros_like(add))
    keys.to_words(desc).sum().backward()
    assert keys.silhouette[0].weight.grad.abs().sum() > 0 and keys.look[1].weight.grad.abs().sum() > 0


def test_seg_key_objects_model_locates_and_trains(plain, pw_images, tmp_path):  # noqa: F811
    """The option needs the visual keys; cell labels name what a click at each cell hits; one training example
    trains the silhouette CNN (object words) and the zero projection (retrieval); the public API locates with it."""
    import pixelwise
    from pixelwise.core.errors import ConfigError
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import PixelWorldSource, UniPixelTrainDataset, click_word_labels, word_classes
    from pixelwise.train.unipixel_loss import LossConfig, example_loss

    raw = UniPixelForConditionalGeneration.from_pretrained(plain).config.to_dict()
    with pytest.raises(ConfigError, match="seg_key_objects needs"):
        UniPixelConfig.from_dict({**raw, "seg_key_objects": 16})
    cfg = load_config(None, [f"model.init={plain}",
                             "model.config_overrides={seg_retrieval_dim: 16, seg_key_visual: true, seg_key_objects: 16}"])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    classes = word_classes(processor)
    # the cell labels: the visible object under each cell's centre (what a click there hits), -1 on background
    s = json.loads((pw_images / "samples.jsonl").read_text().splitlines()[0])
    scene = Scene.from_json(s["scene"])
    labels = click_word_labels(scene, 0, (8, 8), classes)
    rgb, vis, _ = render(scene, [0])
    step = vis.shape[-1] // 8
    for cell in range(64):
        y, x = (cell // 8) * step + step // 2, (cell % 8) * step + step // 2
        hit = np.flatnonzero(vis[:, 0, y, x])
        want = [-1, -1] if not len(hit) else [classes[0][0].index(scene.objects[hit[0]].color_at(0)),
                                              classes[0][1].index(scene.objects[hit[0]].shape)]
        assert labels[cell].tolist() == want, cell
    assert (labels[:, 0] >= 0).any() and (labels[:, 0] < 0).any()

    data = UniPixelTrainDataset(PixelWorldSource(pw_images), processor, seed=0, video_frames=(1,), visual_words=True)
    ex = next(e for e in (data[i] for i in range(len(data))) if e is not None and e.seg_targets is not None)
    assert ex.cell_words is not None and ex.cell_words.shape == (64, 2)
    total, metrics, _ = example_loss(model.train(), ex, LossConfig(retrieval_weight=1.0, visual_words_weight=1.0))
    total.backward()
    assert "loss_object_words" in metrics and "loss_retrieval" in metrics
    assert model.object_keys.silhouette[0].weight.grad.abs().sum() > 0
    assert model.object_keys.to_key.weight.grad.abs().sum() > 0  # the zero projection learns from the retrieval
    pipe = pixelwise.load(plain)
    pipe.model = model.eval()
    r = pipe.segment(rgb[:1], "the red circle", max_new_tokens=8)
    assert all(o.masks.shape[-2:] == rgb.shape[1:3] for o in r.objects)


def test_llm_object_view_starts_neutral_and_trains_from_the_answers(pw_images, tmp_path):  # noqa: F811
    """Grown onto a model without it, the view changes no output; the LM loss alone reaches its projection through
    the visual tokens and through a region's `<|mem|>` embedding; the public API runs with it."""
    import shutil

    import pixelwise
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import DenseGroundingSource, UniPixelTrainDataset
    from pixelwise.train.unipixel_loss import LossConfig, example_loss
    from tests.train.test_grounding import DEFAULT, without

    from pixelwise.recipes.train_unipixel import PROCESSOR_FILES

    torch.set_num_threads(1)
    shipped = UniPixelForConditionalGeneration.from_pretrained(DEFAULT)
    heads = ("llm_object_view", "seg_ground", "seg_ground_words", "seg_ground_geometry")
    raw = {k: v for k, v in shipped.config.to_dict().items() if k not in heads}
    with pytest.raises(ConfigError, match="llm_object_view needs"):
        UniPixelConfig.from_dict({**{k: v for k, v in raw.items() if k != "seg_key_objects"}, "llm_object_view": True})
    base = without(shipped, "llm_object_view", "region_own_frame")  # the default model without the view
    base.save_pretrained(tmp_path / "base")
    for f in PROCESSOR_FILES:
        if (DEFAULT / f).is_file():
            shutil.copyfile(DEFAULT / f, tmp_path / "base" / f)
    cfg = load_config(None, [f"model.init={tmp_path / 'base'}", "model.config_overrides={llm_object_view: true}"])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    model.eval()
    data = UniPixelTrainDataset(DenseGroundingSource(pw_images, mem_rate=1.0), processor, seed=0, video_frames=(1,),
                                visual_words=True)
    ex = data[0]  # every object of the scene as a region, named region by region
    assert ex.inputs.refer_mask is not None
    with torch.no_grad():
        before, after = base(ex.inputs), model(ex.inputs)
    assert torch.allclose(before.logits, after.logits, atol=1e-5)
    assert after.objects is not None and after.objects[1].shape[0] == 64

    total, metrics, _ = example_loss(model.train(), ex, LossConfig(seg_enabled=False, visual_words_weight=1.0))
    total.backward()
    grad = model.object_view.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # the zero view learns from the answer
    # without a <|seg|>, the descriptors computed for the LLM still learn to name their objects
    assert "loss_object_words" in metrics and model.object_keys.silhouette[0].weight.grad.abs().sum() > 0

    pipe = pixelwise.load(DEFAULT)
    pipe.model = model.eval()
    with torch.no_grad():
        model.object_view.weight.normal_(0, 0.1)  # a trained view changes what the LLM reads
    r = pipe.ask(ex.frames_rgb[:1], "What shape is [0]?", regions=[pixelwise.Point(40, 40)], max_new_tokens=8)
    assert isinstance(r.text, str)


def test_motion_features_say_where_each_proposal_went():
    from pixelwise.models.unipixel.object_keys import MOTION_FEATURES, motion_features, spread_frames

    first = _square(6, 10, 4) * 20 - 10  # logits
    right, down = _square(6, 10, 20) * 20 - 10, _square(6, 22, 4) * 20 - 10
    scores = [torch.full((2,), 5.0)] * 3
    feats = motion_features([torch.stack([first, first]), torch.stack([right, down]), torch.stack([right, down])],
                            scores)
    assert feats.shape == (2, MOTION_FEATURES)
    assert feats[0, 0] > 1.5 and abs(feats[0, 1]) < 0.05  # 16 of 32 px to the right: shift x 0.5, x4
    assert feats[1, 1] > 1.0 and abs(feats[1, 0]) < 0.05
    assert torch.equal(feats[:, 8:], torch.zeros(2, 4))  # a third later frame was not given
    assert torch.equal(motion_features([first[None]], [scores[0][:1]]), torch.zeros(1, MOTION_FEATURES))
    assert spread_frames(1) == [] and spread_frames(4) == [1, 2, 3] and spread_frames(16) == [5, 10, 15]


def test_seg_key_motion_starts_neutral_and_learns_from_a_clip(tmp_path_factory, tmp_path):
    """Grown onto the default model the motion term changes no key; a clip's retrieval loss reaches it; the public
    API tracks the proposals of a clip and segments with it."""
    import pixelwise
    from pixelwise.data.pixelworld.generate import GenConfig, generate
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import PixelWorldSource, UniPixelTrainDataset
    from pixelwise.train.unipixel_loss import LossConfig, example_loss
    from tests.train.test_grounding import DEFAULT

    torch.set_num_threads(1)
    clips = tmp_path_factory.mktemp("pw") / "vid"
    generate(clips, GenConfig(split="test", num=2, seed=0, video=True, tasks=("motion_referring",)))
    base = UniPixelForConditionalGeneration.from_pretrained(DEFAULT).eval()
    cfg = load_config(None, [f"model.init={DEFAULT}", "model.config_overrides={seg_key_motion: true}"])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    data = UniPixelTrainDataset(PixelWorldSource(clips), processor, seed=0, video_frames=(8,), sam2_max_frames=4)
    ex = next(e for e in (data[i] for i in range(len(data))) if e is not None and e.seg_targets is not None)
    assert ex.inputs.sam2_frames.shape[0] == 4
    with torch.no_grad():
        feats = base.require_sam2().encode_frames(ex.inputs.sam2_frames)
        out = base(ex.inputs)
        visual = base.retrieval_visual(out.video_embeds, ex.inputs.video_grid_thw)
        before, _ = base.retrieval_keys(feats[0], visual)
        after, _ = model.eval().retrieval_keys(feats[0], visual, later=model.later_frames(feats))
    assert torch.allclose(before, after, atol=1e-6)
    total, _, _ = example_loss(model.train(), ex, LossConfig(retrieval_weight=1.0))
    total.backward()
    assert model.object_keys.motion.weight.grad.abs().sum() > 0

    pipe = pixelwise.load(DEFAULT)
    pipe.model = model.eval()
    with torch.no_grad():
        model.object_keys.motion.weight.normal_(0, 0.5)
    r = pipe.segment(ex.frames_rgb, "the circle that moves to the left", max_new_tokens=8)
    assert all(o.masks.shape[-2:] == ex.frames_rgb.shape[1:3] for o in r.objects)


def test_region_own_frame_describes_a_later_region_as_if_its_pair_came_first(tmp_path_factory):
    """A `<|mem|>` region that starts on frame pair 1 gets the descriptor the same region gets when its pair is the
    clip's first (zeros without the option); training's thinned SAM2 frames give it through `region_frames`; the
    option needs the object view."""
    from pixelwise.core.errors import ConfigError
    from pixelwise.data.pixelworld.generate import GenConfig, generate
    from pixelwise.data.pixelworld.render import render
    from pixelwise.data.pixelworld.scene import Scene
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration, UniPixelProcessor
    from pixelwise.models.unipixel.processing_unipixel import mem_prefix, video_message
    from tests.train.test_grounding import DEFAULT, without

    torch.set_num_threads(1)
    clips = tmp_path_factory.mktemp("pw") / "own"
    generate(clips, GenConfig(split="test", num=1, seed=3, video=True, tasks=("motion_referring",)))
    scene = Scene.from_json(json.loads((clips / "samples.jsonl").read_text().splitlines()[0])["scene"])
    rgb, vis, _ = render(scene, list(range(4)))
    shipped = without(UniPixelForConditionalGeneration.from_pretrained(DEFAULT), "region_own_frame")
    raw = shipped.config.to_dict()
    with pytest.raises(ConfigError, match="region_own_frame needs"):
        UniPixelConfig.from_dict({**{k: v for k, v in raw.items() if k != "llm_object_view"}, "region_own_frame": True})
    own = UniPixelForConditionalGeneration(UniPixelConfig.from_dict({**raw, "region_own_frame": True}))
    own.load_state_dict(shipped.state_dict())
    own.eval()
    processor = UniPixelProcessor.from_pretrained(DEFAULT)

    def inputs(frames, label):  # label: bool [T, O, H, W]
        _, _, thw = processor.process_frames(frames)
        _, refer = processor.memory_inputs(torch.from_numpy(label), thw)
        text = mem_prefix(refer, frames.shape[0], False) + "What shape is [0]?"
        x = processor(frames, [video_message(text, num_frames=frames.shape[0])], add_generation_prompt=True)
        x.refer_mask = refer
        return x

    obj = int(np.argmax(vis[:, 2:4].reshape(vis.shape[0], -1).sum(1)))  # the object most visible on frames 2-3
    later = np.zeros((4, 1) + vis.shape[-2:], bool)
    later[2:, 0] = vis[obj, 2:4] > 0
    full, cut = inputs(rgb, later), inputs(rgb[2:], later[2:])
    with torch.no_grad():
        descs = {}
        for name, model, x in (("off", shipped.eval(), full), ("on", own, full), ("first", own, cut)):
            _, info = model.embed(x)
            on_tokens = model.objects_on_tokens(info.objects[1], x.video_grid_thw)
            mine = model.own_frame_objects(x, info.video_embeds) if model.config.region_own_frame else {}
            descs[name] = model.region_descriptors(on_tokens, x.refer_mask, mine)
        assert torch.equal(descs["off"], torch.zeros_like(descs["off"]))
        assert descs["on"].abs().sum() > 0 and torch.allclose(descs["on"], descs["first"], atol=1e-4)
        # training thins sam2_frames to a few spread ones and keeps each pair's first frame in region_frames
        thinned = inputs(rgb, later)
        thinned.region_frames, thinned.sam2_frames = thinned.sam2_frames[::2], thinned.sam2_frames[[0, 3]]
        embeds, info = own.embed(full)
        mem = full.input_ids == own.config.mem_token_id
        assert not torch.allclose(embeds[0, mem], shipped.embed(full)[0][0, mem])  # the forward reads it
        assert torch.allclose(own.own_frame_objects(thinned, info.video_embeds)[1],
                              own.own_frame_objects(full, info.video_embeds)[1], atol=1e-5)
        thinned.region_frames = None
        with pytest.raises(PromptError, match="own frame"):
            own.own_frame_objects(thinned, info.video_embeds)
    assert without(own, "region_own_frame").config.region_own_frame is False


def test_region_motion_says_where_a_prompted_region_went_and_starts_neutral():
    from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
    from pixelwise.models.unipixel.object_keys import REGION_MOTION_FEATURES, region_motion_features
    from tests.train.test_grounding import DEFAULT

    mask = torch.zeros(4, 3, 8, 8, dtype=torch.bool)
    for g, x in enumerate([0, 2, 4, 6]):  # object 0 moves right over 4 pairs
        mask[g, 0, 3:5, x: x + 2] = True
    for g, x in enumerate([0, 4, 0]):  # object 1 goes right and comes back (pairs 0-2)
        mask[g, 1, 0:2, x: x + 2] = True
    mask[1, 2, 5:7, 5:7] = True  # object 2 is given on one pair only
    f = region_motion_features(mask)
    assert f.shape == (4 + 3 + 1, REGION_MOTION_FEATURES)
    assert f[0, 0] > 2.5 and abs(float(f[0, 1])) < 1e-6 and abs(float(f[0, 2])) < 1e-6  # 6/8 of the frame right
    assert torch.allclose(f[3, 6:], f[3, :2]) and torch.equal(f[0, 6:], torch.zeros(2))  # this pair's offset
    assert abs(float(f[4, 0])) < 1e-6 and f[4, 3] > 3.9  # back where it started, after travelling 2 x 4/8
    assert torch.equal(f[7, [0, 1, 2, 3, 4, 6, 7]], torch.zeros(7)) and abs(float(f[7, 5]) - 0.25) < 1e-6

    shipped = UniPixelForConditionalGeneration.from_pretrained(DEFAULT).eval()
    grown = UniPixelForConditionalGeneration(UniPixelConfig.from_dict({**shipped.config.to_dict(), "region_motion": True}))
    missing, _ = grown.load_state_dict(shipped.state_dict(), strict=False)
    assert sorted(missing) == ["region_motion.bias", "region_motion.weight"]
    assert torch.equal(grown.region_motion.weight, torch.zeros_like(grown.region_motion.weight))  # changes nothing at init


def test_retrieval_rerank_learns_an_ordinal_that_a_query_key_product_cannot():
    """Cells of four colours at random x; the query asks a colour and the target is the leftmost cell of it. A query-key
    product scores every cell of the asked colour alike (about one in three right); the rerank, zero at init, starts
    there and learns the rule from the cross-entropy alone."""
    import torch.nn.functional as F

    from pixelwise.models.unipixel.object_keys import RetrievalRerank

    torch.manual_seed(0)
    k, n = 32, 16

    def batch(size):
        colour, x = torch.randint(0, 4, (size, n)), torch.rand(size, n)
        keys = torch.zeros(size, n, k)
        keys[torch.arange(size)[:, None], torch.arange(n)[None], colour] = 1.0
        keys[..., 4], keys[..., 5] = x, 1.0
        want = torch.randint(0, 4, (size,))
        query = torch.zeros(size, k)
        query[torch.arange(size), want] = 4.0
        match = colour == want[:, None]
        keep = match.any(1)
        target = torch.where(match, x, torch.full_like(x, 9.0)).argmin(1)
        return query[keep], keys[keep], target[keep]

    rerank = RetrievalRerank(k, 2)

    def accuracy(q, keys, target, model):
        logits = torch.einsum("bk,bnk->bn", q, keys)
        with torch.no_grad():
            picks = [int(model(q[i: i + 1], keys[i], logits[i: i + 1]).argmax()) for i in range(len(q))]
        return float(np.mean([int(logits[i].argmax()) == int(target[i]) for i in range(len(q))])), \
            float(np.mean([p == int(t) for p, t in zip(picks, target)]))

    test = batch(256)
    product, before = accuracy(*test, rerank)
    assert before == product < 0.5  # zero at init: the same picks as the product
    opt = torch.optim.Adam(rerank.parameters(), 1e-3)
    for _ in range(300):
        q, keys, target = batch(16)
        logits = torch.einsum("bk,bnk->bn", q, keys)
        loss = sum(F.cross_entropy(rerank(q[i: i + 1], keys[i], logits[i: i + 1]), target[i: i + 1])
                   for i in range(len(q))) / len(q)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy(*test, rerank)[1] > 0.9


def grown_on_shipped(pw_images, tmp_path, overrides: str, base=None, **data_options):  # noqa: F811
    """The shipped model (or the model folder `base`), the same grown with `overrides` as a recipe's
    `config_overrides` builds it, its config as a dict, and one segmentation example of `pw_images`."""
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import PixelWorldSource, UniPixelTrainDataset
    from tests.train.test_grounding import DEFAULT

    torch.set_num_threads(1)
    base = base or DEFAULT
    shipped = UniPixelForConditionalGeneration.from_pretrained(base)
    cfg = load_config(None, [f"model.init={base}", f"model.config_overrides={overrides}"])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    data = UniPixelTrainDataset(PixelWorldSource(pw_images), processor, seed=0, video_frames=(1,), **data_options)
    ex = next(e for e in (data[i] for i in range(len(data))) if e is not None and e.seg_targets is not None)
    return shipped, model, shipped.config.to_dict(), ex


def test_seg_rerank_grows_onto_a_trained_model_without_changing_its_clicks(pw_images, tmp_path):  # noqa: F811
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig

    shipped, model, raw, ex = grown_on_shipped(pw_images, tmp_path, "{seg_rerank: 2}")
    with pytest.raises(ConfigError, match="seg_rerank needs seg_retrieval_dim"):
        UniPixelConfig.from_dict({**raw, "seg_retrieval_dim": 0, "seg_key_objects": 0, "seg_key_visual": False,
                                  "llm_object_view": False, "region_own_frame": False, "seg_rerank": 2})
    retrieval_unchanged_and_learning(shipped, model, ex, model.seg_rerank)


def retrieval_unchanged_and_learning(shipped, model, ex, head) -> None:
    """A head grown on with a zero output layer leaves the retrieval loss as it was, and that loss reaches it."""
    from pixelwise.train.unipixel_loss import LossConfig, example_loss

    loss = LossConfig(retrieval_weight=1.0)
    with torch.no_grad():
        _, m0, _ = example_loss(shipped.eval(), ex, loss)
        _, m1, _ = example_loss(model.eval(), ex, loss)
    assert m0["loss_retrieval"] == pytest.approx(m1["loss_retrieval"], abs=1e-5)
    total, _, _ = example_loss(model.train(), ex, loss)
    total.backward()
    assert head.out.weight.grad.abs().sum() > 0


def test_pixel_statistics_tell_plain_from_striped_from_dotted():
    from pixelwise.models.unipixel.object_keys import PIXEL_FEATURES, pixel_statistics

    frame = torch.zeros(3, 128, 128)
    frame[0, 8:56, 8:56] = 1.0  # plain red square
    frame[0, 72:120, 8:56] = (torch.arange(48) // 3 % 2).float()[None, :]  # red vertical stripes, 3 px wide
    frame[0, 8:56, 72:120] = 1.0
    frame[0, 8:56, 72:120][(torch.arange(48)[:, None] % 6 < 2) & (torch.arange(48)[None] % 6 < 2)] = 0.0  # dots
    masks = torch.stack([_square(12, 2, 2), _square(12, 18, 2), _square(12, 2, 18)])  # mask cells: 4 px each
    stats = pixel_statistics(masks, frame)
    assert stats.shape == (3, PIXEL_FEATURES)
    mean, dev, dx, dy = stats[:, 0], stats[:, 3], stats[:, 6], stats[:, 9]  # the red channel's four numbers
    assert mean[0] == pytest.approx(1.0, abs=1e-5) and dev[0] < 0.01 and dx[0] + dy[0] < 1e-4
    assert dev[1] > 0.4 and dx[1] > 0.25 and dy[1] < 1e-4  # vertical stripes: changes along x only
    assert dev[2] > 0.2 and dx[2] > 0.1 and dy[2] > 0.1  # dots: along both
    assert torch.equal(stats[:, [1, 2, 4, 5]], torch.zeros(3, 4))  # green and blue are flat


def test_key_pixels_and_key_words_grow_onto_a_trained_model_and_learn(pw_images, tmp_path):  # noqa: F811
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig
    from pixelwise.train.unipixel_data import WORD_KINDS
    from pixelwise.train.unipixel_loss import LossConfig, example_loss

    shipped, model, raw, ex = grown_on_shipped(pw_images, tmp_path, "{seg_key_pixels: true, seg_key_words: true}",
                                               visual_words=tuple(WORD_KINDS))
    with pytest.raises(ConfigError, match="seg_key_pixels needs seg_key_objects"):
        UniPixelConfig.from_dict({**raw, "seg_key_objects": 0, "llm_object_view": False, "region_own_frame": False,
                                  "seg_ground": 0, "seg_ground_words": 0, "seg_ground_geometry": False,
                                  "seg_key_pixels": True})
    loss = LossConfig(retrieval_weight=1.0, visual_words_weight=1.0, visual_word_kinds=tuple(WORD_KINDS),
                      key_words_weight=1.0)
    with torch.no_grad():
        _, m0, _ = example_loss(shipped.eval(), ex, loss)
        _, m1, _ = example_loss(model.eval(), ex, loss)
    assert m0["loss_retrieval"] == pytest.approx(m1["loss_retrieval"], abs=1e-5)  # the new inputs start at zero
    assert "loss_key_words" not in m0 and m1["loss_key_words"] > 0  # only a model with the head names its keys
    total, _, _ = example_loss(model.train(), ex, loss)
    total.backward()
    assert model.object_keys.pixels.weight.grad.abs().sum() > 0  # the zero pixel input learns
    assert model.seg_key_words.weight.grad.abs().sum() > 0 and model.seg_key[2].weight.grad.abs().sum() > 0
