"""The UniPixel recipe end to end on a toy-size model and a few PixelWorld samples: conversations and label masking,
losses, training + merged checkpoint that loads, exact resume, and 2-process DDP / FSDP2 == 1 process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]

TOY_SIZES = {"llm_hidden": 64, "llm_layers": 2, "llm_heads": 4, "llm_kv_heads": 2, "llm_intermediate": 96,
             "mrope_section": [2, 3, 3], "vit_hidden": 32, "vit_depth": 2, "vit_heads": 2, "vit_intermediate": 48,
             "vit_fullatt": [1], "sam2_memory_layers": 1, "sam2_dropout": 0.0}


@pytest.fixture(scope="module")
def pw_data(tmp_path_factory):
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("pw")
    generate(root / "img", GenConfig(split="train", num=8, seed=0, tasks=("referring", "region")))
    generate(root / "vid", GenConfig(split="train", num=4, seed=0, video=True, num_frames=8,
                                     tasks=("referring", "pixelqa")))
    return root


def toy_config(pw_data: Path, run_dir: Path, **over) -> Path:
    cfg = {
        "run_dir": str(run_dir), "seed": 0, "threads": 1,
        "model": {"init": "scratch", "vocab_size": 300, "sizes": TOY_SIZES},
        "data": {"sources": [{"type": "pixelworld", "root": str(pw_data / "img"), "rate": 1.0},
                             {"type": "pixelworld", "root": str(pw_data / "vid"), "rate": 1.0}],
                 "video_frames": [4], "sam2_max_frames": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "steps": 4, "micro_batch": 2, "grad_accum": 1,
        "checkpoint": {"every_minutes": 0, "every_steps": 0, "keep": 2},
        "log": {"every_steps": 1, "tensorboard": False, "progress": False},
        "final": {"save": "full", "path": str(run_dir / "final")},
    }
    for k, v in over.items():
        cfg[k] = v
    path = run_dir.parent / f"{run_dir.name}.yaml"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_recipe(config: Path, *args: str, nproc: int = 1) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    mod = ["-m", "pixelwise.recipes.train_unipixel", str(config), *args]
    if nproc == 1:
        cmd = [sys.executable, *mod]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *mod]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])


def losses(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- pieces


def test_templates_and_label_mask(pw_data):
    from pixelwise.data.pixelworld.dataset import PixelWorldDataset
    from pixelwise.data.templates import pixelworld_conversations

    ds = PixelWorldDataset(pw_data / "vid")
    kinds = set()
    for i in range(len(ds)):
        item = ds[i]
        for seed in range(20):
            for conv in pixelworld_conversations(item.sample, item.masks, item.prompts, random.Random(seed)):
                kinds.add(conv.data_type)
                user, answer = conv.turns[0]
                assert "[SEG]" not in answer and "<region>" not in user
                n_seg = answer.count("<|seg|>")
                if conv.seg_masks is not None and n_seg:
                    assert conv.seg_masks.shape[0] == n_seg
                assert user.count("<|ref|>") == len(conv.ref_prompts)
    assert {"seg_video", "region_video"} <= kinds and kinds & {"mem_point", "mem_box"}


def test_answer_styles_say_what_precedes_the_seg_token(pw_data):
    from pixelwise.data.pixelworld.dataset import PixelWorldDataset
    from pixelwise.data.templates import pixelworld_conversations, seg_first

    assert seg_first("Sure, a large red circle <|seg|>.") == "<|seg|> Sure, a large red circle."
    assert seg_first("<|seg|>.") == "<|seg|>."
    assert seg_first("There are 2: <|seg|> and <|seg|>.") == "There are 2: <|seg|> and <|seg|>."  # several: as is
    ds = PixelWorldDataset(pw_data / "vid")
    seen = 0
    for i in range(len(ds)):
        item = ds[i]
        for seed in range(10):
            plain = pixelworld_conversations(item.sample, item.masks, item.prompts, random.Random(seed))
            first = pixelworld_conversations(item.sample, item.masks, item.prompts, random.Random(seed), "segment_first")
            said = pixelworld_conversations(item.sample, item.masks, item.prompts, random.Random(seed), "restate")
            for c in said:
                if c.data_type.startswith("seg_") and item.sample.get("phrase") and c.seg_masks.shape[0] == 1:
                    assert c.turns[0][1] == f"Sure, {item.sample['phrase']} <|seg|>."
            for a, b in zip(plain, first):
                assert a.data_type == b.data_type and a.turns[0][0] == b.turns[0][0]  # same question, same draw
                if b.data_type.startswith("seg_") and b.turns[0][1].count("<|seg|>") == 1:
                    assert b.turns[0][1].startswith("<|seg|>")
                    seen += 1
    assert seen


def test_assistant_only_labels():
    from pixelwise.train.unipixel_data import _assistant_mask

    # ids: <s>=1 user... <im_start>=5 'assistant\n'=[7, 8] answer 9 9 <im_end>=6 ...
    ids = torch.tensor([5, 3, 3, 6, 5, 7, 8, 9, 9, 6, 4, 5, 7, 8, 9, 6])
    mask = _assistant_mask(ids, 5, 6, [7, 8])
    assert mask.tolist() == [False] * 7 + [True, True, True] + [False] * 4 + [True, True]


def test_sam2_losses_multimask_min_and_presence():
    from pixelwise.modules.losses import Sam2LossWeights, dice_loss, sam2_frame_loss, sigmoid_focal_loss

    tgt = torch.zeros(1, 8, 8, dtype=torch.bool)
    tgt[0, 2:6, 2:6] = True
    good = torch.where(tgt, 10.0, -10.0)
    bad = -good
    logits = torch.stack([bad, good, bad], 1)  # [O=1, K=3, 8, 8]: candidate 1 is right
    w = Sam2LossWeights()
    out = sam2_frame_loss(logits, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([5.0]), tgt, w)
    assert float(out["focal"]) < 1e-6 and float(out["dice"]) < 1e-3  # the min over candidates is the good one
    assert float(out["iou"]) < 1e-6  # predicted IoUs equal the actual ones
    absent = sam2_frame_loss(logits, torch.zeros(1, 3), torch.tensor([5.0]), torch.zeros_like(tgt), w)
    assert float(absent["focal"]) == 0 and float(absent["dice"]) == 0 and float(absent["object_score"]) > 0
    x = torch.randn(2, 5, 5)
    t = (torch.rand(2, 5, 5) > 0.5).float()
    assert sigmoid_focal_loss(x, t).shape == (2,) and dice_loss(x, t).shape == (2,)


# ---------------------------------------------------------------------------------------------- recipe


@pytest.mark.slow
def test_train_saves_a_loadable_model(pw_data, tmp_path):
    run = tmp_path / "run"
    run_recipe(toy_config(pw_data, run))
    rows = losses(run)
    assert len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration, UniPixelProcessor, video_message

    model = UniPixelForConditionalGeneration.from_pretrained(run / "final")
    proc = UniPixelProcessor.from_pretrained(run / "final")
    assert proc.frame_max_pixels == 112 * 112
    inputs = proc(np.zeros((2, 128, 128, 3), np.uint8), [video_message("Please segment the red circle.", 2)])
    pred = model.predict(inputs, max_new_tokens=4)
    assert pred.generated_ids.numel() >= 1


def test_steps_zero_assembles_a_model_from_its_parts(pw_data, tmp_path):
    """A trained part (here a SAM2 mask refiner, saved alone) grown onto another model without training."""
    from safetensors.torch import load_file

    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    base, part, merged = tmp_path / "base", tmp_path / "part", tmp_path / "merged"
    run_recipe(toy_config(pw_data, base, steps=1))
    grow = {"init": str(base / "final"), "config_overrides": {"sam2_arch": {"mask_refiner": 4}}}
    run_recipe(toy_config(pw_data, part, steps=2, model=grow, objective="sam2_prompts",
                          train={"trainable": ["^sam2\\.mask_refiner\\."]},
                          final={"save": "partial", "path": str(part / "final")}))
    saved = load_file(str(part / "final" / "partial.safetensors"))
    refiner = {k: v for k, v in saved.items() if k.startswith("sam2.mask_refiner.")}
    assert len(refiner) == 10  # 5 convolutions (the file also holds buffers)
    assert any(v.abs().sum() > 0 for k, v in refiner.items() if k.startswith("sam2.mask_refiner.out."))  # trained
    run_recipe(toy_config(pw_data, merged, steps=0,
                          model={**grow, "partial_checkpoints": [str(part / "final" / "partial.safetensors")]}))
    model = UniPixelForConditionalGeneration.from_pretrained(merged / "final")
    own = model.state_dict()
    assert model.sam2.cfg.mask_refiner == 4 and all(torch.equal(own[k], v) for k, v in refiner.items())
    base_sd = UniPixelForConditionalGeneration.from_pretrained(base / "final").state_dict()
    assert all(torch.equal(own[k], v) for k, v in base_sd.items())  # the rest is the init's
    assert not (merged / "losses.jsonl").exists() or not losses(merged)


@pytest.mark.slow
def test_resume_continues_exactly(pw_data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_recipe(toy_config(pw_data, full, steps=6, final={"save": "none"}))
    cfg = toy_config(pw_data, part, steps=6, final={"save": "none"})
    run_recipe(cfg, "--set", "stop_after=3")
    assert len(losses(part)) == 3
    run_recipe(cfg, "--resume")
    a, b = losses(full), losses(part)
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in b] == [r["loss"] for r in a]  # exactly, step for step


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_a_rerun_must_resume(pw_data, tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    cfg = toy_config(pw_data, run, steps=400, final={"save": "none"})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pixelwise.recipes.train_unipixel", str(cfg)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((run / "losses.jsonl").is_file() and (run / "losses.jsonl").read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    done = len(losses(run))
    assert f"checkpoint at step {done}" in out and (run / "checkpoints" / f"step_{done:07d}").is_dir()
    again = subprocess.run([sys.executable, "-m", "pixelwise.recipes.train_unipixel", str(cfg)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "continue it with --resume" in again.stderr
    run_recipe(cfg, "--resume", "--set", f"steps={done + 2}")
    assert [r["step"] for r in losses(run)] == list(range(1, done + 3))  # nothing repeated, nothing lost


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_cpu_processes_match_one(pw_data, tmp_path, strategy):
    single, multi = tmp_path / "single", tmp_path / "multi"
    run_recipe(toy_config(pw_data, single, final={"save": "none"}))
    cfg = toy_config(pw_data, multi, final={"save": "none"}, micro_batch=1,
                     distributed={"strategy": strategy})
    run_recipe(cfg, nproc=2)
    a, b = losses(single), losses(multi)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):  # the same 2 examples per step, split over two ranks: equal up to summation order
        assert abs(x["loss"] - y["loss"]) < 1e-3 * max(1.0, abs(x["loss"]))


@pytest.mark.slow
def test_stage3_recipe_lora_merged_checkpoint(pw_data, tmp_path):
    """The stage-3 config (LoRA via peft on LLM + ViT attention, adapters + SAM2 trainable, merger frozen, SAM2 at
    its own learning rate) on the shipped tiny model: trains and writes a merged full checkpoint without LoRA names."""
    pytest.importorskip("peft")
    run = tmp_path / "st3"
    cfg = ROOT / "pixelwise" / "recipes" / "configs" / "unipixel_stage3.yaml"
    run_recipe(cfg, "--set", f"model.init={ROOT / 'pixelwise' / 'checkpoints' / 'unipixel-tiny'}",
               "--set", "model.partial_checkpoints=[]", "--set", "model.gradient_checkpointing=false",
               "--set", "train.lora.r=4", "--set", "train.lora.alpha=8",
               "--set", f"data.sources=[{{type: pixelworld, root: {pw_data / 'img'}}}, "
                        f"{{type: pixelworld, root: {pw_data / 'vid'}}}]",
               "--set", "data.num_workers=0", "--set", "data.sam2_max_frames=2", "--set", "steps=2",
               "--set", "micro_batch=2", "--set", "grad_accum=1", "--set", "bf16=false",
               "--set", "distributed.strategy=ddp", "--set", f"run_dir={run}", "--set", f"final.path={run / 'final'}", "--set", "log.tensorboard=false")
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration

    base = UniPixelForConditionalGeneration.from_pretrained(ROOT / "pixelwise" / "checkpoints" / "unipixel-tiny")
    merged = UniPixelForConditionalGeneration.from_pretrained(run / "final")
    names = dict(merged.named_parameters())
    assert not any("lora" in n for n in names)
    assert sum(p.numel() for p in names.values()) == sum(p.numel() for p in base.parameters())
    frozen = "visual.merger.mlp.0.weight"
    assert torch.equal(names[frozen], dict(base.named_parameters())[frozen])  # the merger stayed frozen
    changed = "language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(names[changed], dict(base.named_parameters())[changed])  # LoRA merged into the base
