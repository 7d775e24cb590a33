"""Process-group set-up and model wrapping on torch's own engines (DDP, FSDP2); nothing home-made beyond that.

Launch with `torchrun --nproc_per_node N ...`; a plain `python ...` run is a world of one. CPU uses gloo, CUDA nccl.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from pixelwise.core.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; pick the device and backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def wrap_model(
    model: torch.nn.Module,
    info: DistInfo,
    strategy: str = "ddp",
    shard_units: Callable[[torch.nn.Module], Iterable[torch.nn.Module]] | None = None,
    find_unused_parameters: bool = False,
) -> torch.nn.Module:
    """Wrap for data parallelism: `none`, `ddp`, or `fsdp2` (fully_shard each unit, then the root).

    `shard_units(model)` lists the submodules to shard separately (e.g. decoder layers, ViT blocks); without it only
    the root is sharded. `find_unused_parameters` is for models whose forward skips parts on some batches (e.g. a
    mask decoder on text-only batches).
    """
    if not info.enabled or strategy == "none":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for unit in shard_units(model) if shard_units else ():
            fully_shard(unit)
        fully_shard(model)
        return model
    raise ConfigError(f"unknown distributed strategy '{strategy}' (use none, ddp or fsdp2)")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def full_state_dict(model: torch.nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """The whole model's state on CPU (gathers FSDP2 shards; identical for DDP and single process)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not info.enabled:
        return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    return get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def finish(info: DistInfo, code: int = 0) -> None:
    """End a worker. Multi-process runs leave through `os._exit` after a barrier: destroying gloo groups after
    FSDP2 sometimes aborts the process after all work is done, which would turn a good run into a failed one."""
    if info.enabled:
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
