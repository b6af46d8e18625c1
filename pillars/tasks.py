"""Tasks: each one a short recipe of dataset + model + objective + metric.

A task names its own configuration keys (a dataclass of options) and its changes to the training
defaults; `build` turns a resolved configuration into a `Job`, which is all the training loop needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import data, metrics
from pillars.data.batches import TensorBatches
from pillars.models.cnn import ConvNet, ConvNetConfig


@dataclass
class Job:
    """What the training loop trains: a model, data on the device, an objective and a metric."""
    model: nn.Module
    train: TensorBatches
    test: tuple[torch.Tensor, ...]
    loss: Callable[[nn.Module, tuple], torch.Tensor]                  # mean loss of one batch
    eval_sums: Callable[[nn.Module, tuple], dict[str, torch.Tensor]]  # additive sums of one batch
    summary: Callable[[dict[str, float]], dict[str, float]]          # sums of the set -> figures
    conv: bool = False    # a conv net: trained in channels_last memory format


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    dataset: str
    model: str
    objective: str
    metric: str                     # the key of `summary` that names the task's result
    options: type                   # dataclass of the task's own configuration keys
    build: Callable[[dict, torch.device], Job]
    train_defaults: dict = field(default_factory=dict)
    higher_is_better: bool = True


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in TASKS:
        from pillars.config import ConfigError, unknown_name_message
        raise ConfigError(unknown_name_message("task", name, TASKS))
    return TASKS[name]


# ----------------------------------------------------------------------------- image classification

@dataclass
class ImageOptions:
    width: int = 32              # channels of the first stage; each later stage doubles them
    stages: int = 2
    hidden: int = 128
    batch_norm: bool = True
    dropout: float = 0.25
    label_smoothing: float = 0.0
    train_samples: int = 0       # use only the first N training images (0: all of them)


def image_tensors(dataset: str, device: torch.device, train_samples: int = 0):
    """(train_x, train_y), (test_x, test_y) as float (N, C, H, W) tensors normalised with the training
    set's mean and std, and int64 labels, all on `device`."""
    arrays = data.load(dataset)
    train_x = torch.from_numpy(arrays["train_x"]).float().div_(255)
    if train_x.ndim == 3:
        train_x = train_x.unsqueeze(1)
    mean, std = train_x.mean().item(), train_x.std().item()

    def prepare(x, y):
        x = torch.from_numpy(x).float().div_(255)
        x = x.unsqueeze(1) if x.ndim == 3 else x
        return ((x - mean) / std).to(device), torch.from_numpy(y).long().to(device)

    train_x, train_y = prepare(arrays["train_x"], arrays["train_y"])
    if train_samples:
        train_x, train_y = train_x[:train_samples], train_y[:train_samples]
    return (train_x, train_y), prepare(arrays["test_x"], arrays["test_y"])


def build_image_classifier(dataset: str) -> Callable[[dict, torch.device], Job]:
    def build(cfg: dict, device: torch.device) -> Job:
        (train_x, train_y), test = image_tensors(dataset, device, cfg["train_samples"])
        model = ConvNet(ConvNetConfig(
            in_channels=train_x.shape[1], num_classes=len(data.get(dataset).meta["classes"]),
            image_size=train_x.shape[-1], widths=tuple(cfg["width"] * 2 ** i for i in range(cfg["stages"])),
            hidden=cfg["hidden"], batch_norm=cfg["batch_norm"], dropout=cfg["dropout"]))

        def loss(model, batch):
            x, y = batch
            return F.cross_entropy(model(x), y, label_smoothing=cfg["label_smoothing"])

        return Job(model=model, train=TensorBatches((train_x, train_y), cfg["batch_size"], cfg["seed"]),
                   test=test, loss=loss, eval_sums=lambda m, b: metrics.classification_sums(m(b[0]), b[1]),
                   summary=metrics.classification_summary, conv=True)
    return build


register(Task(
    name="fashion-cnn",
    description="a small VGG-style CNN on Fashion-MNIST (the foundation's first real task)",
    dataset="fashion-mnist", model="ConvNet (2 stages, 32/64 channels, BatchNorm)",
    objective="cross-entropy", metric="accuracy", options=ImageOptions,
    build=build_image_classifier("fashion-mnist"),
    train_defaults={"epochs": 4.0, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-4,
                    "warmup_steps": 100},
))
