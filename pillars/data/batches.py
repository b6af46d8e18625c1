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


class TokenBatches:
    """Batches of examples of similar length (sequence pairs), each costing about the same number of padded
    tokens, as fairseq's --max-tokens batches: little of a batch is padding, and a batch of short pairs holds
    more of them than one of long pairs. `sizes` (N,) is each example's cost per row: the longer side of a
    pair, which every row of its batch is padded to.

    The examples sorted by size are cut into as many batches as `batch_size` examples each would make
    (N // batch_size, the steps of an epoch of TensorBatches): every batch costs at most the same budget
    of rows x its largest size, the smallest budget that needs no more batches. The cuts depend on the sorted
    sizes alone, so they are the same every epoch; each epoch draws which of the equally long examples fall
    in which batch, and the order of the batches, from a generator seeded by (seed, epoch). A batch is thus
    a pure function of the step, as with TensorBatches, and `batch_size` is the mean number of examples a
    step reads."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], sizes: torch.Tensor, batch_size: int, seed: int = 0):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors) or len(sizes) != n:
            raise ValueError("all tensors and the sizes need the same first dimension")
        if batch_size > n:
            from pillars.config import ConfigError
            raise ConfigError(f"batch_size {batch_size} is larger than the {n} training examples; "
                              f"set --batch-size {n} or less")
        self.tensors, self.batch_size, self.seed, self.n = tensors, batch_size, seed, n
        self.sizes = sizes.cpu().long()
        self.sorted_sizes = self.sizes.sort().values
        self.budget = self._smallest_budget(max(1, n // batch_size))
        self.cuts = self._cuts(self.budget)            # batch b holds sorted examples cuts[b] .. cuts[b + 1] - 1
        self.steps_per_epoch = len(self.cuts) - 1
        self._epoch, self._order, self._batches = -1, None, None

    def __len__(self) -> int:
        return self.n

    def _cuts(self, budget: int) -> list[int]:
        """Where greedy filling of the sorted examples up to `budget` padded tokens starts each batch."""
        cuts, start = [0], 0
        for i, size in enumerate(self.sorted_sizes.tolist()):
            if (i + 1 - start) * size > budget and i > start:
                cuts.append(i)
                start = i
        return cuts + [self.n]

    def _smallest_budget(self, batches: int) -> int:
        lo, hi = int(self.sorted_sizes[-1]), int(self.sorted_sizes.sum())   # the largest example fits alone
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self._cuts(mid)) - 1 <= batches:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples sorted by size, ties in a random order, and the order of the batches, of `epoch`."""
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            shuffled = torch.randperm(self.n, generator=g)
            order = shuffled[self.sizes[shuffled].argsort(stable=True)]
            self._epoch, self._order = epoch, order.to(self.tensors[0].device)
            self._batches = torch.randperm(self.steps_per_epoch, generator=g)
        return self._order, self._batches

    def batch(self, step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, ...]:
        """This process's share (a contiguous part of its rows) of the batch of optimizer step `step`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order, batches = self.order(epoch)
        b = int(batches[i])
        idx = order[self.cuts[b]:self.cuts[b + 1]].tensor_split(world)[rank]
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
