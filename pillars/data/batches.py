"""Batches drawn from tensors that sit on the training device, in an order that is a pure function of
(seed, step): resuming at step k needs nothing but k, and every process of a distributed run agrees on
the global batch without communicating."""
from __future__ import annotations

from typing import Iterator

import torch


class TensorBatches:
    """Shuffled, fixed-size batches over the first dimension of `tensors` (all on one device)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int = 0):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors need the same first dimension")
        if batch_size > n:
            from pillars.config import ConfigError
            raise ConfigError(f"batch_size {batch_size} is larger than the {n} training examples; "
                              f"set --batch-size {n} or less")
        self.tensors, self.batch_size, self.seed, self.n = tensors, batch_size, seed, n
        self.steps_per_epoch = n // batch_size   # the last incomplete batch of an epoch is dropped
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.tensors[0].device)
        return self._perm

    def batch(self, step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, ...]:
        """This process's share of the global batch of optimizer step `step`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        share = self.batch_size // world
        start = i * self.batch_size + rank * share
        idx = self.order(epoch)[start:start + share]
        return tuple(t[idx] for t in self.tensors)


def eval_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, rank: int = 0, world: int = 1,
                 limit: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    """In-order batches over this process's contiguous shard of the set; with `limit`, the set is cut
    to its first `limit` x `batch_size` examples first, so every world size sees the same examples."""
    n = len(tensors[0])
    if limit:
        n = min(n, limit * batch_size)
    lo, hi = n * rank // world, n * (rank + 1) // world
    for start in range(lo, hi, batch_size):
        yield tuple(t[start:min(start + batch_size, hi)] for t in tensors)
