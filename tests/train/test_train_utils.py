import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelwise.core.errors import CheckpointError
from pixelwise.train.optim import GroupSpec, OptimConfig, cosine_with_warmup, param_groups
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import latest_checkpoint, load_checkpoint, save_checkpoint

WORKER = Path(__file__).with_name("toy_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "losses.jsonl").read_text().splitlines()]


def run_worker(run_dir, *args, nproc=1):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(run_dir), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(WORKER), str(run_dir), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_resume_gives_identical_losses(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    run_worker(full, "12", "none")
    run_worker(part, "12", "none", "--stop-after", "5")
    run_worker(part, "12", "none", "--resume")
    assert losses(part) == losses(full)  # exactly, step for step


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_process_matches_single_process(tmp_path, strategy):
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    run_worker(single, "6", "none", "--no-dropout")
    run_worker(multi, "6", strategy, "--no-dropout", nproc=2)
    a, b = losses(single), losses(multi)
    assert len(a) == len(b) == 6
    # same global batch split over two ranks: equal up to float summation order
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5


def test_sampler_resume_and_sharding():
    s = ResumableSampler(10, seed=1)
    it = iter(s)
    first = [next(it) for _ in range(13)]
    s2 = ResumableSampler(10, seed=1)
    it2 = iter(s2)
    [next(it2) for _ in range(7)]
    s3 = ResumableSampler(10, seed=1)
    s3.load_state_dict(s2.state_dict())
    it3 = iter(s3)
    assert [next(it3) for _ in range(6)] == first[7:]
    shards = [ResumableSampler(10, seed=1, rank=r, world_size=3)._epoch_order(0) for r in range(3)]
    assert sum(len(x) for x in shards) == 9 and len(set().union(*map(set, shards))) == 9


def test_param_groups_and_schedule():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    m[0].weight.requires_grad_(False)
    groups = param_groups(m, OptimConfig(lr=1e-3, weight_decay=0.1, groups=[GroupSpec(r"^1\.", 1e-4)]))
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}
    assert by_name == {"0.bias": (1e-3, 0.0), "1.weight": (1e-4, 0.1), "1.bias": (1e-4, 0.0)}
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] > 0.1


def test_checkpoint_is_atomic_and_pruned(tmp_path):
    m = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, m, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_0000002", "step_0000003"]
    # a leftover temp folder (a run killed mid-write) is never taken as a checkpoint
    (tmp_path / "checkpoints" / ".step_0000004.tmp1").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(latest_checkpoint(tmp_path), torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_a_kill_while_pruning_leaves_nothing_resume_does_not_clean(tmp_path, monkeypatch):
    """Pruning renames a folder to `.trash_*` before deleting it; a kill in between (simulated: the delete never
    happens) leaves no half-deleted `step_*` folder, and `--resume` (resume_checkpoint) removes what is left."""
    import shutil

    from pixelwise.train import state

    m = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, 1, m, keep=1)
    root = tmp_path / "checkpoints"
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # killed after the rename, before the delete
    save_checkpoint(tmp_path, 2, m, keep=1)
    monkeypatch.undo()
    names = sorted(p.name for p in root.iterdir())
    assert [n for n in names if n.startswith("step_")] == ["step_0000002"]
    assert any(n.startswith(".trash_step_0000001") for n in names)
    (root / ".step_0000003.tmp99").mkdir()  # killed mid-write
    (root / "step_0000000").mkdir()  # a folder without trainer state (an older run's half-deleted checkpoint)
    assert state.resume_checkpoint(tmp_path).name == "step_0000002"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000002"]


def test_tied_weights_saved_once_and_restored(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight

    a = Tied()
    path = save_checkpoint(tmp_path, 1, a)
    b = Tied()
    load_checkpoint(path, b)
    assert torch.equal(b.head.weight, a.emb.weight) and b.head.weight is b.emb.weight


def test_learning_curves_png(tmp_path):
    import json

    from pixelwise.train.curves import plot, read_losses, smooth

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 10.0 / s, "loss_lm": 1.0} for s in range(1, 41)] + [{"step": 40, "loss": 0.5}]
    (run / "losses.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    d = read_losses(run)
    assert d["loss"].shape == (2, 40) and d["loss"][1, -1] == 0.5  # a repeated step keeps its last value
    assert np.allclose(smooth(np.arange(6.0), 3), [0, 0.5, 1, 2, 3, 4])
    out = plot([run], ["loss", "loss_box_prompt"], tmp_path / "c.png", window=5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipe_config_is_strict():
    from pixelwise.core.errors import ConfigError
    from pixelwise.recipes.train_unipixel import load_config

    cfg = load_config(None, ["optim.lr=1e-3", "steps=20", "model.config_overrides={vision_abs_pos: 8}"])
    assert cfg["optim"]["lr"] == 1e-3 and cfg["steps"] == 20 and cfg["model"]["config_overrides"]["vision_abs_pos"] == 8
    for bad, message in (("steps=abc", "steps must be a number"), ("nosuchkey=1", "unknown key 'nosuchkey'"),
                         ("optim.lrr=1", "unknown key 'optim.lrr'"), ("bf16=3", "true or false"),
                         ("steps", "use KEY=VALUE")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [bad])
    for path in (ROOT / "pixelwise" / "recipes" / "configs").glob("*.yaml"):
        load_config(path)  # every shipped config passes the check


def test_progress_bar_starts_at_the_resumed_step_and_moves_every_step(tmp_path):
    from pixelwise.train.logging import RunLogger

    log = RunLogger(tmp_path, {"steps": 10}, 10, tensorboard=False, progress=True, start_step=4)
    task = log._bar.tasks[0]
    assert task.completed == 4 and task.total == 10
    log.tick(5, 0.25, 3.0)
    assert task.completed == 5 and "loss 0.25" in task.fields["info"] and "3.0 samples/s" in task.fields["info"]
    log.close()
