"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, print how to resume (every recipe)."""

from __future__ import annotations

import signal
import sys
import threading

import torch

from pixelwise.train import distributed as D


class StopRequest:
    """SIGINT / SIGTERM set a flag that the loop reads after each step (a half-done optimizer step is never saved);
    a second Ctrl-C stops at once. In a multi-process run the flag is agreed across ranks, so all stop together."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print("\nstopping after this step to save a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr,
              flush=True)

    def agreed(self, info: D.DistInfo | None = None) -> bool:
        if info is None or not info.enabled:
            return self.signal is not None
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=info.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signal is None:
            self.signal = 0  # another rank was told to stop
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
