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


def test_ground_head_recipe_caches_trains_and_grows_onto_the_model(unground, tmp_path):
    """`cache` records what the retrieval reads through the evaluation's own path; `train` fits the head on it and
    writes tensors that a `steps: 0` config grows onto the model; the grown model's clicks on the cached samples are
    the ones the trained head gives on the cache."""
    from pixelwise.models.unipixel.object_keys import GroundingHead
    from pixelwise.recipes import ground_head
    from pixelwise.recipes.train_unipixel import main as train_main

    torch.set_num_threads(1)
    cache = tmp_path / "val.pt"
    n = ground_head.cache(str(unground), "val", 3, 6, cache, workdir=tmp_path / "data")
    records = torch.load(cache)
    assert n == len(records) >= 4
    r = records[0]
    cells = r["keys"].shape[0]
    assert r["share"].shape == (cells,) and r["desc"].shape[0] == cells and r["states"].dim() == 1
    assert abs(float(r["share"].sum()) - float(r["gt"].float().mean()) * cells) < 1e-3

    out = tmp_path / "head"
    rep = ground_head.train(str(unground), [cache], cache, out, layers=1, width=32, epochs=2)
    assert rep["train_records"] > 0 and len(rep["curve"]) == 2
    assert json.loads((out / "report.json").read_text())["val_after"] == rep["val_after"]

    cfg = tmp_path / "grow.yaml"
    cfg.write_text(f"recipe: unipixel\nrun_dir: {tmp_path / 'run'}\nmodel:\n  init: {unground}\n"
                   f"  config_overrides: {{seg_ground: 1, seg_ground_width: 32}}\n"
                   f"  partial_checkpoints: [{out / 'partial.safetensors'}]\nsteps: 0\n"
                   f"final: {{save: full, path: {tmp_path / 'run' / 'final'}}}\n")
    train_main([str(cfg)])
    grown = tmp_path / "val-grown.pt"
    ground_head.cache(str(tmp_path / "run" / "final"), "val", 3, 6, grown, workdir=tmp_path / "data")
    from safetensors.torch import load_file

    head = GroundingHead(r["states"].shape[0], r["keys"].shape[1], r["desc"].shape[1], cells, 32, 1).eval()
    head.load_state_dict({k.removeprefix("seg_ground."): v for k, v in load_file(out / "partial.safetensors").items()})
    for a, b in zip(records, torch.load(grown)):
        with torch.no_grad():
            want = head(a["states"][None], a["keys"], a["desc"], a["logits"][None])[0]
        assert torch.allclose(b["logits"], want, atol=1e-4)
    assert ground_head.main(["train", "--cache", str(tmp_path / "nope.pt"), "--val", str(cache), "--out",
                             str(tmp_path / "x")]) == 2
