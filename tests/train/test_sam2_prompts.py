"""Stage 0 of a from-scratch model: SAM2 alone on PixelWorld objects prompted by clicks and boxes."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.test_unipixel_recipe import losses, pw_data, run_recipe, toy_config  # noqa: F401  (fixture)


def test_prompts_fall_on_their_object(pw_data):  # noqa: F811
    from pixelwise.train.sam2_prompts import PromptedObjectDataset

    ds = PromptedObjectDataset([pw_data / "img", pw_data / "vid"], image_size=64, clip_frames=3, objects=3, seed=0)
    keys = ds.group_keys()
    assert set(keys) == {"image", "clip"}
    kinds = set()
    for i in range(len(ds)):
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            it = ds[i]
            if it is None:
                continue
            k, o = (3 if keys[i] == "clip" else 1), it.targets.shape[0]
            assert 1 <= o <= 3 and it.frames.shape == (k, 3, 64, 64) and it.targets.shape == (o, k, 64, 64)
            assert it.coords.shape == (o, 2, 2) and it.labels.shape == (o, 2)
            for target, coords, labels in zip(it.targets[:, 0], it.coords, it.labels.tolist()):
                assert target.any()
                kinds.add(tuple(labels))
                if labels == [2, 3]:  # box corners around the object (jitter <= 10 % of a side)
                    ys, xs = torch.nonzero(target, as_tuple=True)
                    (x0, _), (_, y1) = coords.tolist()
                    w, h = float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
                    assert abs(x0 - float(xs.min())) <= 0.1 * w + 3 and abs(y1 - float(ys.max() + 1)) <= 0.1 * h + 3
                else:  # the first click is on the object
                    assert _near(target, *coords[0].tolist())
    assert {(2, 3), (1, -1)} <= kinds
    ds.set_epoch(0)
    a, b = ds[0], ds[0]
    assert torch.equal(a.coords, b.coords) and torch.equal(a.targets, b.targets)  # pure function of the index


def _near(mask, x, y, r=2):
    x, y = int(x), int(y)
    return bool(mask[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].any())


@pytest.mark.slow
def test_stage0_trains_sam2_only_and_stage1_starts_from_it(pw_data, tmp_path):  # noqa: F811
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    run0 = tmp_path / "s0"
    cfg0 = toy_config(pw_data, run0, objective="sam2_prompts", steps=3, micro_batch=3,
                      train={"trainable": ["^sam2\\."]})
    run_recipe(cfg0)
    rows = losses(run0)
    assert len(rows) == 3 and all(r["loss_seg"] > 0 and "loss_lm" not in r for r in rows)
    init = run0 / "model_init"
    from pixelwise.train import tiny

    before = tiny.build_model(json.loads((init / "config.json").read_text()), seed=0).state_dict()
    after = UniPixelForConditionalGeneration.from_pretrained(run0 / "final").state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"sam2"}
    # stage 1 from stage 0's final folder: the conversation objective over the same data
    run1 = tmp_path / "s1"
    run_recipe(toy_config(pw_data, run1, model={"init": str(run0 / "final")}, steps=2))
    assert len(losses(run1)) == 2 and (run1 / "final" / "model.safetensors").is_file()
    # a checkpoint of a run that started from a folder exports with that folder's config and tokenizer
    from pixelwise.recipes.export_checkpoint import export

    out = export(run1, tmp_path / "exported")
    exported = UniPixelForConditionalGeneration.from_pretrained(out).state_dict()
    final = UniPixelForConditionalGeneration.from_pretrained(run1 / "final").state_dict()
    assert all(torch.equal(exported[k], final[k]) for k in final)
    assert (out / "tokenizer.json").read_text() == (run0 / "final" / "tokenizer.json").read_text()


def test_box_prompt_loss_is_zero_at_the_targets_box_tokens_and_skips_absent_objects():
    from pixelwise.modules.sam2 import Sam2Config, Sam2Model
    from pixelwise.train.tiny import TinySizes, sam2_arch
    from pixelwise.train.unipixel_loss import box_prompt_loss

    torch.manual_seed(0)
    sam2 = Sam2Model(Sam2Config.from_dict(sam2_arch(TinySizes(sam2_image_size=64))))
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 10:20, 30:45] = True  # box x 30..45, y 10..20
    masks[2, 0:64, 0:5] = True
    teacher = sam2.sam_prompt_encoder.embed_points(
        torch.tensor([[[30.0, 10.0], [45.0, 20.0]], [[0.0, 0.0], [5.0, 64.0]]]), torch.tensor([[2, 3], [2, 3]]),
        pad=False)
    prompts = torch.zeros(3, 2, teacher.shape[-1])
    prompts[0], prompts[2] = teacher[0], teacher[1]
    prompts[1] = 100.0  # object 1 is absent from the frame: not counted
    assert float(box_prompt_loss(sam2, prompts, masks)) < 1e-10
    shifted = (prompts + 1.0).detach().requires_grad_(True)
    loss = box_prompt_loss(sam2, shifted, masks)
    assert abs(float(loss) - 1.0) < 1e-6
    loss.backward()
    assert shifted.grad[1].abs().sum() == 0 and shifted.grad[0].abs().sum() > 0
    assert all(p.grad is None for p in sam2.parameters())
    assert box_prompt_loss(sam2, prompts, torch.zeros(3, 64, 64, dtype=torch.bool)) is None
    with pytest.raises(ValueError, match="2 prompt tokens"):
        box_prompt_loss(sam2, torch.zeros(3, 1, teacher.shape[-1]), masks)


@pytest.mark.slow
def test_text_lm_objective_trains_the_llm_on_every_token(pw_data, tmp_path):  # noqa: F811
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    run0 = tmp_path / "t0"
    run_recipe(toy_config(pw_data, run0, objective="text_lm", steps=3, micro_batch=4,
                          train={"trainable": ["^language_model\\.", "^lm_head\\."]}))
    rows = losses(run0)
    assert len(rows) == 3 and all(r["loss_lm"] > 0 and "loss_seg" not in r for r in rows)
    from pixelwise.train import tiny

    before = tiny.build_model(json.loads((run0 / "model_init" / "config.json").read_text()), seed=0).state_dict()
    after = UniPixelForConditionalGeneration.from_pretrained(run0 / "final").state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"language_model", "lm_head"}  # the LLM only (lm_head is tied to its embeddings)


def test_text_lm_items_are_the_rendered_conversations(pw_data):  # noqa: F811
    from pixelwise.train.text_lm import TextLMDataset, TextLMModule
    from pixelwise.train.unipixel_data import MixedSource, PixelWorldSource

    class Proc:  # a character-level stand-in tokenizer
        def encode(self, text):
            return [ord(c) % 50 for c in text]

    ds = TextLMDataset(MixedSource([(PixelWorldSource(pw_data / "img"), 1.0)]), Proc(), seed=0, max_tokens=64)
    items = [ds[i] for i in range(len(ds))]
    assert all(it is not None and 0 < it.ids.numel() <= 64 for it in items)
    assert torch.equal(ds[0].ids, items[0].ids)  # a pure function of the index
    assert TextLMModule  # the module is exercised end to end by the recipe test above


def test_items_do_not_depend_on_the_process_hash_seed(pw_data):  # noqa: F811
    """Item randomness must be the same in every process (a resumed run re-creates its data in a new process)."""
    import os
    import subprocess
    import sys

    code = ("import sys; from pixelwise.train.sam2_prompts import PromptedObjectDataset as D; "
            "d = D([sys.argv[1]], 64, seed=0); print(d[0].coords.tolist(), d[1].labels.tolist())")
    outs = {subprocess.run([sys.executable, "-c", code, str(pw_data / "img")], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": h}, check=True).stdout
            for h in ("1", "2")}
    assert len(outs) == 1


def test_merge_sam2_tracking_takes_only_the_tracking_tensors(tmp_path):
    """Stage 0d's tracking weights go into another model folder; a SAM2 that differs elsewhere is refused."""
    import shutil

    import pytest
    import torch
    from safetensors.torch import load_file, save_file

    from pixelwise.core.errors import CheckpointError
    from pixelwise.recipes.merge_sam2_tracking import merge
    from tests.train.test_grounding import DEFAULT

    base, track = tmp_path / "base", tmp_path / "track"
    shutil.copytree(DEFAULT, base)
    shutil.copytree(DEFAULT, track)
    tensors = load_file(str(track / "model.safetensors"))
    mem = next(k for k in tensors if k.startswith("sam2.memory_attention."))
    llm = "model.embed_tokens.weight"  # the LLM (official layout)
    tensors[mem] = tensors[mem] + 1.0
    tensors[llm] = tensors[llm] + 1.0  # not SAM2: the base's is kept
    save_file(tensors, str(track / "model.safetensors"))
    out = merge(base, track, tmp_path / "out")
    merged, own = load_file(str(out / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert torch.equal(merged[mem], tensors[mem]) and torch.equal(merged[llm], own[llm])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in base.iterdir())

    dec = next(k for k in tensors if k.startswith("sam2.sam_mask_decoder."))
    tensors[dec] = tensors[dec] + 1.0
    save_file(tensors, str(track / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not the same stage-0 SAM2"):
        merge(base, track, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
