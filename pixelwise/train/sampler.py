"""A sampler that can stop and resume at any batch, sharded across ranks, identical for any number of restarts."""

from __future__ import annotations

from typing import Iterator

import numpy as np


class ResumableSampler:
    """Yields dataset indices: a fresh seeded permutation per epoch, rank `r` takes every `world`-th index.

    The position is counted in samples *per rank*; `state_dict()`/`load_state_dict()` carry (epoch, position)
    so a resumed run sees exactly the samples an uninterrupted one would have seen next.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if size <= 0:
            raise ValueError("dataset is empty")
        self.size, self.seed, self.rank, self.world = size, seed, rank, world_size
        self.shuffle = shuffle
        self.epoch, self.position = 0, 0

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle else np.arange(self.size)
        per_rank = self.size // self.world  # drop the remainder so every rank takes the same number of steps
        return order[: per_rank * self.world][self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        """Endless stream across epochs, starting from the saved position."""
        while True:
            order = self._epoch_order(self.epoch)
            while self.position < len(order):
                idx = int(order[self.position])
                self.position += 1
                yield idx
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
