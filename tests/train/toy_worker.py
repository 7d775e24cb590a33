"""A toy regression run built from pixelwise.train utilities; launched directly or under torchrun by the tests.

Usage: python toy_worker.py RUN_DIR STEPS STRATEGY [--resume] [--stop-after K] [--no-dropout]
Writes the per-step global loss to RUN_DIR/losses.jsonl (rank 0).
"""

import json
import sys
from pathlib import Path

import torch

from pixelwise.train import distributed as D
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import latest_checkpoint, load_checkpoint, save_checkpoint

GLOBAL_BATCH = 8


class Toy(torch.nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.l1 = torch.nn.Linear(6, 16)
        self.l2 = torch.nn.Linear(16, 1)
        self.drop = torch.nn.Dropout(dropout)  # exercises the RNG state on resume

    def forward(self, x):
        return self.l2(self.drop(torch.tanh(self.l1(x))))


def main():
    run_dir, steps, strategy = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    resume = "--resume" in sys.argv
    stop_after = int(sys.argv[sys.argv.index("--stop-after") + 1]) if "--stop-after" in sys.argv else None
    info = D.init_distributed("cpu")
    torch.manual_seed(0)
    data_x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    data_y = data_x.sum(1, keepdim=True).sin()
    model = Toy(0.0 if "--no-dropout" in sys.argv else 0.1)
    model = D.wrap_model(model, info, strategy, shard_units=lambda m: [m.l1])
    opt = build_optimizer(model, OptimConfig(lr=0.05, groups=[]))
    sched = cosine_with_warmup(opt, steps, warmup_steps=2)
    sampler = ResumableSampler(len(data_x), seed=3, rank=info.rank, world_size=info.world_size)
    torch.manual_seed(100 + info.rank)  # per-rank dropout stream; a resumed run restores it from the checkpoint
    start = 0
    if resume and (ck := latest_checkpoint(run_dir)) is not None:
        st = load_checkpoint(ck, D.unwrap(model), opt, sched)
        sampler.load_state_dict(st.sampler)
        start = st.step
    it = iter(sampler)
    per_rank = GLOBAL_BATCH // info.world_size
    for step in range(start, steps):
        idx = [next(it) for _ in range(per_rank)]
        loss = torch.nn.functional.mse_loss(model(data_x[idx]), data_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        global_loss = D.all_reduce_mean(loss.item(), info)
        if info.is_main:
            with open(run_dir / "losses.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "loss": global_loss}) + "\n")
        if strategy == "none":
            save_checkpoint(run_dir, step + 1, model, opt, sched, sampler.state_dict())
        if stop_after is not None and step + 1 == stop_after:
            break
    D.finish(info)


if __name__ == "__main__":
    main()
