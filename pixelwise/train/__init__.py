"""Small training utilities that recipes call explicitly (no trainer class hides the loop).

- `state`: atomic, resumable checkpoints (model / optimizer / scheduler / RNG / data position) in safetensors + JSON.
- `distributed`: torchrun set-up and wrapping with DDP or FSDP2 (`fully_shard`), gloo on CPU, nccl on GPU.
- `optim`: parameter groups by name pattern with their own learning rates; cosine schedule with warm-up.
- `sampler`: a seeded, rank-sharded sampler that can resume mid-epoch.
- `logging`: run directory (resolved config, git commit), progress bar, TensorBoard.
"""
