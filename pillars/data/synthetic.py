"""Synthetic sequence problems whose answer depends on inputs far in the past.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4), in the form most later work uses (Le et
al. 2015; Arjovsky et al. 2016): each of T steps carries a random value in [0, 1] and a marker; two steps
are marked, one in each half of the sequence, and the target at the end is the sum of the two marked
values. The network must find the marked values among T - 2 distractors and hold the first one for T/2
steps on average (up to T). Always answering 1 (the mean) gives a mean squared error of 1/6.
"""
from __future__ import annotations

import torch


def adding_problem(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of `length` steps: inputs (n, length, 2) = (value, marker), targets (n, 1)."""
    if length < 4:
        raise ValueError("the adding problem needs sequences of at least 4 steps")
    values = torch.rand(n, length, generator=generator)
    first = torch.randint(0, length // 2, (n,), generator=generator)
    second = torch.randint(length // 2, length, (n,), generator=generator)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), target[:, None]


class AddingBatches:
    """Fresh adding-problem sequences for every step, drawn from a generator seeded by (seed, step): an
    endless training set whose batch is still a pure function of the step."""

    def __init__(self, length: int, batch_size: int, seed: int, device: torch.device, epoch_size: int = 100_000):
        self.length, self.batch_size, self.seed, self.device = length, batch_size, seed, device
        self.n = epoch_size
        self.steps_per_epoch = max(1, epoch_size // batch_size)

    def __len__(self) -> int:
        return self.n

    def batch(self, step: int, rank: int = 0, world: int = 1):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        x, y = adding_problem(self.batch_size, self.length, g)
        share = self.batch_size // world
        part = slice(rank * share, (rank + 1) * share)
        return x[part].to(self.device), y[part].to(self.device)
