"""Tasks: each one a short recipe of dataset + model + objective + metric.

A task names its own configuration keys (a dataclass of options) and its changes to the defaults;
`build` turns a resolved configuration into a `Job`, which is all the training loop needs. The recipes
live by kind: `images` (CNNs, ViT), `language` (language models), `sequences` (long lags, forecasting,
sentiment), `translation`, `generative` (GANs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from pillars.data.batches import TensorBatches


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
    inputs: "ImageInputs | None" = None   # how raw images become model inputs (for predict, explain)
    tokenizer: object = None              # text tasks: a data.tokenizers.Tokenizer, saved as tokenizer.json
    baselines: "Callable[[], dict[str, float]] | None" = None   # non-neural figures on the same test set
    info: dict = field(default_factory=dict)   # what `explain` needs beyond the model and data (units, texts)
    tokens_per_sample: int = 0   # text tasks: tokens in one training example, to report tokens/s
    images: "Callable[[nn.Module], torch.Tensor] | None" = None   # a (C, H, W) grid in [0, 1] written at
    #                                      every evaluation to samples/step-N.png and TensorBoard (GANs)


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
    defaults: dict = field(default_factory=dict)   # the task's changes to the loop's and options' defaults
    higher_is_better: bool = True
    # image classifiers: the model alone from the configuration and the run's saved ImageInputs (no data)
    predictor: "Callable[[dict, ImageInputs], nn.Module] | None" = None


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def check_choice(cfg: dict, key: str, choices: tuple[str, ...]) -> None:
    if cfg[key] not in choices:
        from pillars.config import ConfigError
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {cfg[key]!r}")


def get(name: str) -> Task:
    if name not in TASKS:
        from pillars.config import ConfigError, unknown_name_message
        raise ConfigError(unknown_name_message("task", name, TASKS))
    return TASKS[name]


from pillars.tasks import generative, images, language, sequences, translation  # noqa: E402,F401  (they register their tasks)
from pillars.tasks.images import ImageInputs, normalised, scaled_pixels  # noqa: E402,F401
