"""The grounding head (`seg_ground`, `object_keys.GroundingHead`) and its recipe on cached inputs
(`pixelwise.recipes.ground_head`)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.test_grounding import default_without, pw_images  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def unground(tmp_path_factory):
    """The default model without its grounding head, as a folder (the heads below are grown onto it)."""
    return default_without(tmp_path_factory.mktemp("unground"), "seg_ground")


def test_grounding_head_learns_a_rule_the_product_cannot_express():
    """"The leftmost cell of the asked colour": the state names a colour, each cell's descriptor holds its colour and
    its x. A product of query and key scores every cell of that colour alike; the head, zero at init (so it starts
    from the product's picks), learns the rule from the cross-entropy alone, in batches of states with their own
    cells."""
    import torch.nn.functional as F

    from pixelwise.models.unipixel.object_keys import GroundingHead

    torch.manual_seed(0)
    d, k, w, n = 16, 8, 8, 16

    def batch(size):
        colour, x = torch.randint(0, 4, (size, n)), torch.rand(size, n)
        desc = torch.zeros(size, n, w)
        desc[torch.arange(size)[:, None], torch.arange(n)[None], colour] = 1.0
        desc[..., 4] = x
        keys = desc.clone()
        want = torch.randint(0, 4, (size,))
        states = torch.zeros(size, d)
        states[torch.arange(size), want] = 1.0
        match = colour == want[:, None]
        keep = match.any(1)
        logits = match.float() * 2.0  # the product: every cell of the asked colour alike
        target = torch.where(match, x, torch.full_like(x, 9.0)).argmin(1)
        return states[keep], keys[keep], desc[keep], logits[keep], target[keep]

    head = GroundingHead(d, k, w, n, width=32, layers=2, dropout=0.0)
    test = batch(512)

    def accuracy(model):
        states, keys, desc, logits, target = test
        with torch.no_grad():
            return float((model(states, keys, desc, logits).argmax(1) == target).float().mean())

    product = float((test[3].argmax(1) == test[4]).float().mean())
    assert accuracy(head) == product < 0.5
    opt = torch.optim.Adam(head.parameters(), 2e-3)
    for _ in range(400):
        states, keys, desc, logits, target = batch(64)
        loss = F.cross_entropy(head(states, keys, desc, logits), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy(head) > 0.9
    one = head(test[0][:1], test[1][0], test[2][0], test[3][:1])  # one frame's cells shared by the states
    assert torch.allclose(one, head(test[0][:1], test[1][:1], test[2][:1], test[3][:1]))


def test_seg_ground_grows_onto_a_trained_model_without_changing_its_clicks(pw_images, unground, tmp_path):  # noqa: F811
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig
    from tests.train.test_object_keys import grown_on_shipped, retrieval_unchanged_and_learning

    shipped, model, raw, ex = grown_on_shipped(pw_images, tmp_path, "{seg_ground: 1, seg_ground_width: 32}",
                                               base=unground)
    with pytest.raises(ConfigError, match="seg_ground needs seg_key_objects"):
        UniPixelConfig.from_dict({**raw, "seg_key_objects": 0, "llm_object_view": False, "region_own_frame": False,
                                  "seg_ground": 2})
    with pytest.raises(ConfigError, match="seg_ground_width must be a multiple of 4"):
        UniPixelConfig.from_dict({**raw, "seg_ground": 2, "seg_ground_width": 30})
    retrieval_unchanged_and_learning(shipped, model, ex, model.seg_ground)


def _grown_and_recached(unground, tmp_path, out, overrides: str, record: dict):
    """The head trained into `out` grown onto `unground` by a `steps: 0` config with `overrides`, the grown model's
    cache of the same 6 val samples, and the head loaded on its own (1 layer, width 32) -> (head, grown records)."""
    from safetensors.torch import load_file

    from pixelwise.models.unipixel.object_keys import GroundingHead
    from pixelwise.recipes import ground_head
    from pixelwise.recipes.train_unipixel import main as train_main

    cfg = tmp_path / "grow.yaml"
    cfg.write_text(f"recipe: unipixel\nrun_dir: {tmp_path / 'run'}\nmodel:\n  init: {unground}\n"
                   f"  config_overrides: {{{overrides}}}\n"
                   f"  partial_checkpoints: [{out / 'partial.safetensors'}]\nsteps: 0\n"
                   f"final: {{save: full, path: {tmp_path / 'run' / 'final'}}}\n")
    train_main([str(cfg)])
    grown = tmp_path / "val-grown.pt"
    ground_head.cache(str(tmp_path / "run" / "final"), "val", 3, 6, grown, workdir=tmp_path / "data")
    tensors = {k.removeprefix("seg_ground."): v for k, v in load_file(out / "partial.safetensors").items()}
    words = tensors["word_pos"].shape[0] if "word_pos" in tensors else 0
    head = GroundingHead(record["states"].shape[0], record["keys"].shape[1], record["desc"].shape[1],
                         record["keys"].shape[0], 32, 1, eyes="eyes_in.weight" in tensors, words=words,
                         vocab=tensors["word.weight"].shape[0] - 1 if words else 0,
                         geometry="geometry.weight" in tensors).eval()
    head.load_state_dict(tensors)
    return head, torch.load(grown)


def test_ground_head_recipe_caches_trains_and_grows_onto_the_model(unground, tmp_path):
    """`cache` records what the retrieval reads through the evaluation's own path; `train` fits the head on it and
    writes tensors that a `steps: 0` config grows onto the model; the grown model's clicks on the cached samples are
    the ones the trained head gives on the cache."""
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    n = ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data")
    records = torch.load(cache)
    assert n == len(records) >= 4
    r = records[0]
    cells = r["keys"].shape[0]
    assert r["share"].shape == (cells,) and r["desc"].shape[0] == cells and r["states"].dim() == 1
    assert abs(float(r["share"].sum()) - float(r["gt"].float().mean()) * cells) < 1e-3
    from pixelwise.models.unipixel.object_keys import GEOMETRY_STATS

    geom = r["geom"]  # each cell's proposal: centroid and spread inside the frame, log area share <= 0
    assert geom.shape == (cells, GEOMETRY_STATS) and bool(((geom[:, :4] >= 0) & (geom[:, :4] <= 1)).all())
    assert bool((geom[:, 4] <= 0).all())

    out = tmp_path / "head"
    rep = ground_head.train(str(unground), [cache], cache, out, layers=1, width=32, epochs=2)
    assert rep["train_records"] > 0 and len(rep["curve"]) == 2
    assert json.loads((out / "report.json").read_text())["val_after"] == rep["val_after"]

    head, grown = _grown_and_recached(unground, tmp_path, out, "seg_ground: 1, seg_ground_width: 32", r)
    for a, b in zip(records, grown):
        with torch.no_grad():
            want = head(a["states"][None], a["keys"], a["desc"], a["logits"][None])[0]
        assert torch.allclose(b["logits"], want, atol=1e-4)
    assert ground_head.main(["train", "--cache", str(tmp_path / "nope.pt"), "--val", str(cache), "--out",
                             str(tmp_path / "x")]) == 2


def test_seg_grid_retrieves_among_the_cells_of_a_finer_grid(unground, tmp_path):
    """`seg_grid`: the keys, proposals and clicks live on a G x G grid instead of SAM2's 8 x 8 embedding grid; the
    cache, the head and its warm start from a head trained on another grid follow the model's grid."""
    import shutil

    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    fine = tmp_path / "fine"
    shutil.copytree(unground, fine)
    raw = json.loads((fine / "config.json").read_text())
    (fine / "config.json").write_text(json.dumps({**raw, "seg_grid": 12}))
    with pytest.raises(ConfigError, match="seg_grid needs seg_key_objects"):
        UniPixelConfig.from_dict({**raw, "seg_key_objects": 0, "llm_object_view": False, "region_own_frame": False,
                                  "seg_ground": 0, "seg_grid": 12})

    coarse_cache, fine_cache = tmp_path / "coarse.pt", tmp_path / "fine.pt"
    ground_head.cache(str(unground), "val", 3, 4, coarse_cache, workdir=tmp_path / "data")
    ground_head.cache(str(fine), "val", 3, 4, fine_cache, workdir=tmp_path / "data")
    for a, b in zip(torch.load(coarse_cache), torch.load(fine_cache)):
        assert a["keys"].shape[0] == 64 and b["keys"].shape[0] == b["desc"].shape[0] == b["logits"].shape[0] == 144
        assert torch.equal(a["states"], b["states"])  # the LLM's view (its proposals) stays on the embedding grid
        area = float(b["gt"].float().mean()) * 144  # 12 does not divide 128: the pooling windows overlap a little
        assert abs(float(b["share"].sum()) - area) < 0.1 * area

    coarse = ground_head.train(str(unground), [coarse_cache], coarse_cache, tmp_path / "c", layers=1, width=32,
                               epochs=1)
    assert coarse["grid"] == 8
    warm = ground_head.train(str(fine), [fine_cache], fine_cache, tmp_path / "f", layers=1, width=32, epochs=0,
                             init=tmp_path / "c" / "partial.safetensors")
    assert warm["grid"] == 12 and warm["init"].endswith("partial.safetensors")
    assert ground_head.head_tensors(tmp_path / "c" / "partial.safetensors", 144)["pos"].shape == (144, 32)
    with pytest.raises(ConfigError, match="cannot be resized"):
        ground_head.head_tensors(tmp_path / "c" / "partial.safetensors", 150)
    with pytest.raises(ConfigError, match="not a head of 2 layers"):
        ground_head.train(str(fine), [fine_cache], fine_cache, tmp_path / "g", layers=2, width=32, epochs=0,
                          init=tmp_path / "c" / "partial.safetensors")


def test_grounding_head_eyes_start_neutral_and_need_views():
    """`seg_ground_eyes`: a head with eyes, given the weights of one without, refines the scores exactly as it did
    (the eyes enter through a zero-initialised layer), and asks for the views it reads."""
    from pixelwise.models.unipixel.object_keys import VIEW_CROP, VIEW_STATS, GroundingHead, cell_views

    torch.manual_seed(0)
    plain = GroundingHead(16, 8, 8, 64, width=32, layers=1).eval()
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    eyes = GroundingHead(16, 8, 8, 64, width=32, layers=1, eyes=True).eval()
    eyes.load_state_dict(plain.state_dict(), strict=False)
    masks = torch.full((64, 32, 32), -30.0)
    for i in range(64):  # every cell proposes a 4 x 4 square of its own
        y, x = divmod(i, 8)
        masks[i, 4 * y:4 * y + 4, 4 * x:4 * x + 4] = 30.0
    crops, stats = cell_views(masks, torch.zeros(64), torch.rand(3, 128, 128))
    assert crops.shape == (64, 4, VIEW_CROP, VIEW_CROP) and stats.shape == (64, VIEW_STATS)
    assert torch.allclose(stats[:, 12], (torch.arange(64) % 8 + 0.5) / 8, atol=1e-3)  # centroid x of each square
    states, keys, desc, logits = torch.randn(3, 16), torch.randn(64, 8), torch.randn(64, 8), torch.randn(3, 64)
    with torch.no_grad():
        want = plain(states, keys, desc, logits)
        got, seen = eyes(states, keys, desc, logits, views=(crops, stats), with_eyes=True)
    assert torch.allclose(got, want, atol=1e-6) and seen.shape == (64, 32)
    with pytest.raises(ValueError, match="pass views"):
        eyes(states, keys, desc, logits)


def test_ground_head_recipe_with_eyes_grows_onto_the_model(unground, tmp_path):
    """`cache --views` keeps each cell's views and the attributes of the object at its centre; `train --eyes` fits a
    head that looks, and the model grown with `seg_ground_eyes` computes the same views and clicks at run time."""

    from pixelwise.core.errors import ConfigError
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data", views=True)
    records = torch.load(cache)
    r = records[0]
    cells = r["keys"].shape[0]
    assert r["crops"].shape == (cells, 4, 16, 16) and r["stats"].shape == (cells, 18) and r["labels"].shape == (cells, 4)
    on = r["labels"][:, 0] >= 0
    assert 0 < int(on.sum()) < cells and bool((r["labels"][on] >= 0).all())
    with pytest.raises(ConfigError, match="--eyes needs caches made with"):
        plain = tmp_path / "plain.pt"
        ground_head.cache(str(unground), "val", 3, 2, plain, workdir=tmp_path / "data")
        ground_head.train(str(unground), [plain], plain, tmp_path / "x", layers=1, width=32, epochs=1, eyes=True)

    out = tmp_path / "head"
    rep = ground_head.train(str(unground), [cache], cache, out, layers=1, width=32, epochs=2, eyes=True)
    assert set(rep["curve"][-1]["val_attributes"]) == {"color", "shape", "texture", "size"}
    head, grown = _grown_and_recached(unground, tmp_path, out,
                                      "seg_ground: 1, seg_ground_width: 32, seg_ground_eyes: true", r)
    for a, b in zip(records, grown):
        with torch.no_grad():
            want = head(a["states"][None], a["keys"], a["desc"], a["logits"][None],
                        views=(a["crops"].float(), a["stats"]))[0]
        assert torch.allclose(b["logits"], want, atol=1e-2)  # the cache keeps the views in float16


def test_seg_words_reads_the_turn_each_seg_answers():
    """`seg_words`: the ordinary tokens of the user turn before each `<|seg|>` (not the system prompt, the vision
    tokens or the answer), the last `length` of them, -1 padded; a later turn's `<|seg|>` reads its own turn."""
    import pixelwise

    pipe = pixelwise.load()
    core, tok = pipe.model, pipe.processor.tokenizer
    cfg = core.config
    special = {t: tok.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>")}

    def text(s):
        return tok.encode(s, add_special_tokens=False).ids

    def turn(role, body):
        return [special["<|im_start|>"], *text(f"{role}\n"), *body, special["<|im_end|>"], *text("\n")]

    vision = [cfg.raw["vision_start_token_id"], cfg.video_token_id, cfg.video_token_id, cfg.raw["vision_end_token_id"]]
    first_q, second_q = "Please segment the red circle.", "And the blue star left of it?"
    ids = (turn("system", text("You are a helpful assistant.")) + turn("user", vision + text(first_q))
           + [special["<|im_start|>"], *text("assistant\nSure, it is "), cfg.seg_token_id, special["<|im_end|>"],
              *text("\n")]
           + turn("user", text(second_q)) + [special["<|im_start|>"], *text("assistant\nHere "), cfg.seg_token_id])
    segs = [i - 1 for i, t in enumerate(ids) if t == cfg.seg_token_id]  # the positions whose states prompt SAM2
    words = core.seg_words(ids, segs, 64)
    assert words.shape == (2, 64) and words.dtype == torch.int64
    for row, question in zip(words, (first_q, second_q)):
        kept = [t for t in row.tolist() if t >= 0]
        assert kept == text("\n") + text("user\n") + text(question) and bool((row[len(kept):] == -1).all())
    assert core.seg_words(ids, segs[:1], 3)[0].tolist() == text(first_q)[-3:]
    assert core.seg_words(text("the red circle"), [2], 8)[0, :3].tolist() == text("the red circle")[:3]


def test_grounding_head_learns_from_the_words_what_the_state_does_not_say():
    """`seg_ground_words`: the state says nothing, the question's words name a colour; a head that reads the words
    learns to pick the cell of that colour, and it asks for the words it reads. Zero at init, as without words."""
    import torch.nn.functional as F

    from pixelwise.models.unipixel.object_keys import GroundingHead

    torch.manual_seed(0)
    d, k, w, n, vocab = 16, 8, 8, 16, 20

    def batch(size):
        colour = torch.stack([torch.randperm(n) % 4 for _ in range(size)])
        desc = F.one_hot(colour, w).float()
        want = torch.randint(0, 4, (size,))
        words = torch.full((size, 5), -1)
        words[:, 0], words[:, 1], words[:, 2] = 7, 10 + want, 8  # "the <colour> one"
        target = torch.where(colour == want[:, None], torch.rand(size, n), torch.zeros(size, n)).argmax(1)
        return torch.zeros(size, d), desc.clone(), desc, torch.zeros(size, n), words, target

    head = GroundingHead(d, k, w, n, width=32, layers=2, dropout=0.0, words=5, vocab=vocab)
    states, keys, desc, logits, words, target = batch(256)
    with torch.no_grad():
        assert torch.equal(head(states, keys, desc, logits, words=words), logits)
    with pytest.raises(ValueError, match="reads the question's words"):
        head(states, keys, desc, logits)
    _fit(head, batch, 300, "words")
    with torch.no_grad():
        picked = head(states, keys, desc, logits, words=words).argmax(1)
    colour = desc.argmax(-1)
    assert float((colour[torch.arange(256), picked] == words[:, 1] - 10).float().mean()) > 0.9


def test_ground_head_recipe_with_words_grows_onto_the_model(unground, tmp_path):
    """`cache` keeps each question's tokens as the model reads them; `train --words` fits a head that reads them,
    and the model grown with `seg_ground_words` finds the same words and gives the same clicks at run time."""
    import pixelwise
    from pixelwise.core.errors import ConfigError
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data")
    records = torch.load(cache)
    r = records[0]
    tok = pixelwise.load(str(unground)).processor.tokenizer
    said = tok.decode([t for t in r["words"].tolist() if t >= 0])
    assert r["words"].shape == (ground_head.CACHED_WORDS,) and "segment" in said.lower()
    with pytest.raises(ConfigError, match="--words 65: the caches keep 64"):
        ground_head.train(str(unground), [cache], cache, tmp_path / "x", layers=1, width=32, epochs=0, words=65)
    out = tmp_path / "head"
    rep = ground_head.train(str(unground), [cache], cache, out, layers=1, width=32, epochs=2, words=24)
    assert rep["words"] == 24
    head, grown = _grown_and_recached(unground, tmp_path, out, "seg_ground: 1, seg_ground_width: 32, "
                                      "seg_ground_words: 24", r)
    for a, b in zip(records, grown):
        assert torch.equal(a["words"], b["words"])
        with torch.no_grad():
            want = head(a["states"][None], a["keys"], a["desc"], a["logits"][None],
                        words=ground_head.last_words(a["words"][None], 24))[0]
        assert torch.allclose(b["logits"], want, atol=1e-4)


def test_grounding_head_reads_where_each_proposal_is():
    """`seg_ground_geometry`: "the leftmost cell of the asked colour" when only the proposals' geometry says where
    each cell's object is (the descriptors name the colour alone): a head that reads the geometry learns it, and it
    asks for the geometry it reads."""
    import torch.nn.functional as F

    from pixelwise.models.unipixel.object_keys import GEOMETRY_STATS, GroundingHead

    torch.manual_seed(0)
    d, k, w, n = 16, 8, 8, 16

    def batch(size):
        colour = torch.stack([torch.randperm(n) % 4 for _ in range(size)])
        desc = F.one_hot(colour, w).float()
        geometry = torch.rand(size, n, GEOMETRY_STATS)
        want = torch.randint(0, 4, (size,))
        states = F.one_hot(want, d).float()
        match = colour == want[:, None]
        target = torch.where(match, geometry[..., 0], torch.full((size, n), 9.0)).argmin(1)
        return states, desc.clone(), desc, match.float() * 2.0, geometry, target

    head = GroundingHead(d, k, w, n, width=32, layers=2, dropout=0.0, geometry=True)
    states, keys, desc, logits, geometry, target = batch(512)
    with torch.no_grad():
        assert torch.equal(head(states, keys, desc, logits, geometry=geometry), logits)  # zero at init
    with pytest.raises(ValueError, match="pass geometry="):
        head(states, keys, desc, logits)
    _fit(head, batch, 400, "geometry")
    with torch.no_grad():
        picked = head(states, keys, desc, logits, geometry=geometry).argmax(1)
    assert float((logits.argmax(1) == target).float().mean()) < 0.5  # the colour alone: one of ~4 alike
    assert float((picked == target).float().mean()) > 0.85


def test_ground_head_recipe_with_geometry_grows_onto_the_model(unground, tmp_path):
    """`cache` keeps each cell's proposal geometry; `train --geometry` fits a head that reads it, and the model grown
    with `seg_ground_geometry` reads the same proposals (made once per frame) and gives the same clicks."""
    import pixelwise
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data")
    records = torch.load(cache)
    bare = tmp_path / "bare.pt"
    torch.save([{k: v for k, v in r.items() if k != "geom"} for r in records], bare)
    with pytest.raises(ConfigError, match="--geometry needs caches"):
        ground_head.train(str(unground), [bare], cache, tmp_path / "x", layers=1, width=32, epochs=0, geometry=True)
    out = tmp_path / "head"
    rep = ground_head.train(str(unground), [cache], cache, out, layers=1, width=32, epochs=2, geometry=True)
    assert rep["geometry"] is True
    head, grown = _grown_and_recached(unground, tmp_path, out, "seg_ground: 1, seg_ground_width: 32, "
                                      "seg_ground_geometry: true", records[0])
    for a, b in zip(records, grown):
        assert torch.allclose(a["geom"], b["geom"], atol=1e-5)
        with torch.no_grad():
            want = head(a["states"][None], a["keys"], a["desc"], a["logits"][None], geometry=a["geom"])[0]
        assert torch.allclose(b["logits"], want, atol=1e-4)

    raw = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert raw["seg_ground_geometry"] is True
    with pytest.raises(ConfigError, match="seg_ground_geometry needs seg_ground"):
        UniPixelConfig.from_dict({**raw, "seg_ground": 0})
    core = pixelwise.load(str(tmp_path / "run" / "final")).model
    sam2 = core.require_sam2()
    calls = []
    propose = sam2.propose
    sam2.propose = lambda *a, **kw: calls.append(1) or propose(*a, **kw)
    with torch.no_grad():
        feats = sam2.encode_frames(torch.rand(1, 3, sam2.image_size, sam2.image_size))
        frame = feats[0]
        first, again = core.cell_proposals(frame), core.cell_proposals(frame)
        assert first[0] is again[0] and len(calls) == 1  # made once per frame's features
        assert core.cell_proposals(feats[0])[0] is first[0]  # the features give the same frame object each time
        core.cell_proposals(frame, (4, 4))
        core.cell_proposals(feats.span(0, 1)[0])  # another frame object: made again
    assert len(calls) == 3


def _fit(head, batch, steps: int, extra: str) -> None:
    """Adam at 2e-3 for `steps` fresh batches of 64 (`batch(size)` -> states, keys, desc, logits, the input the head
    reads as its keyword `extra`, target cells), cross-entropy on the refined scores."""
    import torch.nn.functional as F

    opt = torch.optim.Adam(head.parameters(), 2e-3)
    for _ in range(steps):
        b = batch(64)
        loss = F.cross_entropy(head(*b[:4], **{extra: b[4]}), b[5])
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_ground_head_train_stops_and_resumes_exactly(unground, tmp_path):
    """Every epoch ends with a checkpoint: a run stopped after one epoch and resumed ends with the same head and the
    same curve as one that ran through; a folder with a checkpoint is refused without --resume, --resume without
    one is refused, and so is a resume with other settings."""
    from safetensors.torch import load_file

    from pixelwise.core.errors import ConfigError
    from pixelwise.recipes import ground_head

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data")
    args = dict(layers=1, width=32, epochs=2, words=8, geometry=True)
    whole = ground_head.train(str(unground), [cache], cache, tmp_path / "whole", **args)
    with pytest.raises(ConfigError, match="nothing to resume"):
        ground_head.train(str(unground), [cache], cache, tmp_path / "cut", resume=True, **args)
    first = ground_head.train(str(unground), [cache], cache, tmp_path / "cut", stop_after=1, **args)
    assert first["stopped"] == 1 and not (tmp_path / "cut" / "partial.safetensors").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        ground_head.train(str(unground), [cache], cache, tmp_path / "cut", **args)
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        ground_head.train(str(unground), [cache], cache, tmp_path / "cut", resume=True, lr=5e-4, **args)
    rest = ground_head.train(str(unground), [cache], cache, tmp_path / "cut", resume=True, **args)
    drop = lambda curve: [{k: v for k, v in row.items() if k != "seconds"} for row in curve]  # noqa: E731
    assert drop(rest["curve"]) == drop(whole["curve"]) and len(rest["curve"]) == 2
    a, b = (load_file(tmp_path / d / "partial.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
