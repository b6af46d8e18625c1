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


class TokenWindows:
    """Batches of random windows from one long token stream: inputs x = tokens[s:s+T] and targets
    y = tokens[s+1:s+T+1]. The window starts of step k are drawn from a generator seeded by (seed, k), so,
    as with TensorBatches, a batch is a pure function of the step. An epoch is as many windows as tile the
    stream once."""

    def __init__(self, tokens: torch.Tensor, context: int, batch_size: int, seed: int = 0):
        from pillars.config import ConfigError
        if context < 2:
            raise ConfigError(f"context must be at least 2 tokens, not {context}")
        if len(tokens) < context + 1:
            raise ConfigError(f"the training text has {len(tokens)} tokens, fewer than the context of {context}; "
                              "use a longer text or a smaller --set context=N")
        self.tokens, self.context, self.batch_size, self.seed = tokens, context, batch_size, seed
        self.n = (len(tokens) - 1) // context
        self.steps_per_epoch = max(1, self.n // batch_size)
        self._offsets = torch.arange(context + 1, device=tokens.device)

    def __len__(self) -> int:
        return self.n

    def batch(self, step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.tokens) - self.context, (self.batch_size,), generator=g)
        share = self.batch_size // world
        starts = starts[rank * share:(rank + 1) * share].to(self.tokens.device)
        windows = self.tokens[starts[:, None] + self._offsets]
        return windows[:, :-1], windows[:, 1:]


def scored_windows(tokens: torch.Tensor, weights: torch.Tensor, context: int) -> tuple[torch.Tensor, ...]:
    """Cover a held-out stream with windows of `context` tokens that overlap by half, so that every token
    after the first window is predicted from at least context/2 tokens of history and scored exactly once.
    Returns (x, y, w): w is the target's weight (its characters) where it is scored, 0 elsewhere."""
    n = len(tokens) - 1
    if n < context:
        from pillars.config import ConfigError
        raise ConfigError(f"the held-out text has {len(tokens)} tokens, fewer than the context of {context}: "
                          "lower --set context=N, or hold out more text (--set val_fraction)")
    half = context // 2
    starts = list(range(0, n - context + 1, half))
    if starts[-1] + context < n:
        starts.append(n - context)
    idx = torch.tensor(starts)[:, None] + torch.arange(context + 1)
    windows, w = tokens[idx], weights[idx[:, 1:]].clone()
    scored_from = torch.tensor([0] + [prev + context - s for prev, s in zip(starts, starts[1:])])
    w[torch.arange(context)[None, :] < scored_from[:, None]] = 0
    return windows[:, :-1], windows[:, 1:], w
