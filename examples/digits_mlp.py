"""A complete task of your own in one file: a multilayer perceptron on scikit-learn's 8x8 digits.

    PILLARS_TASKS=examples/digits_mlp.py pillars train digits-mlp
    pillars --tasks examples/digits_mlp.py train digits-mlp

It needs no change to pillars: the file registers a `Task` (data + model + objective + metric) when it is
imported. docs/new_task.md walks through it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import data, metrics
from pillars.data.batches import TensorBatches
from pillars.data.vision import stratified_split
from pillars.tasks import Family, Job, Task, register


@dataclass
class MLPConfig:
    inputs: int = 64
    hidden: int = 128
    classes: int = 10
    dropout: float = 0.1


class MLP(nn.Module):
    """y = W2 relu(W1 x + b1) + b2: the network before convolutions (Rumelhart et al. 1986)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.hidden = nn.Linear(cfg.inputs, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(F.relu(self.hidden(x.flatten(1)))))


@dataclass
class DigitsMLPOptions:          # the task's own configuration keys (`pillars list --keys digits-mlp`)
    hidden: int = 128
    dropout: float = 0.1
    valid_fraction: float = 0.1  # of the training digits, held out (stratified, always the same ones)


class DigitsFamily(Family):
    what = "digit classifier"

    def headline(self, summary: dict) -> str:
        return f"{100 * summary['final']['accuracy']:.2f}% accuracy"


def build(cfg: dict, device: torch.device) -> Job:
    arrays = data.load("digits")                     # 8x8 images with values 0-16, and their labels
    x = torch.from_numpy(arrays["train_x"]).float() / 16
    y = torch.from_numpy(arrays["train_y"]).long()
    train_idx, valid_idx = stratified_split(arrays["train_y"], cfg["valid_fraction"], seed=0)
    test = (torch.from_numpy(arrays["test_x"]).float() / 16, torch.from_numpy(arrays["test_y"]).long())
    model = MLP(MLPConfig(hidden=cfg["hidden"], dropout=cfg["dropout"]))

    def loss(model, batch):                          # the objective: mean cross-entropy of a batch
        x, y = batch
        return F.cross_entropy(model(x), y)

    def eval_sums(model, batch):                     # the metric, as sums that add over batches and processes
        x, y = batch
        return metrics.classification_sums(model(x), y)

    def on_device(*ts):
        return tuple(t.to(device) for t in ts)

    return Job(model=model, train=TensorBatches(on_device(x[train_idx], y[train_idx]), cfg["batch_size"], cfg["seed"]),
               valid=on_device(x[valid_idx], y[valid_idx]), test=on_device(*test), loss=loss, eval_sums=eval_sums,
               summary=metrics.classification_summary)


register(Task(
    name="digits-mlp",
    description="a two-layer perceptron on scikit-learn's 8x8 digits (a task from outside the package)",
    dataset="digits", model="MLP (64-128-10)", objective="cross-entropy", metric="accuracy",
    options=DigitsMLPOptions, build=build, family=DigitsFamily(),
    defaults={"epochs": 30.0, "batch_size": 64, "lr": 3e-3, "warmup_steps": 20, "eval_batch_size": 500},
))
