"""The loop's configuration keys, and how a run's whole configuration is resolved and checked."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pillars import tasks
from pillars.config import ConfigError, Range, apply_overrides, check_range, defaults_of, read_toml


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int = 0            # stop after this many optimizer steps (0: run `epochs`)
    batch_size: int = 128         # global batch per optimizer step, over all processes and micro-batches
    accum_steps: int = 1          # micro-batches per optimizer step (gradient accumulation)
    optimizer: str = "adamw"      # adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9         # sgd only (Nesterov)
    betas: str = "0.9,0.999"      # adamw only
    weight_decay: float = 0.0
    schedule: str = "cosine"      # cosine | constant (both after linear warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0     # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 0.0        # max global gradient norm (0: off)
    ema: float = 0.0              # decay of an exponential moving average of the weights, which is then what is
                                  # evaluated, sampled from and saved (0: off; 0.999 averages ~1,000 steps)
    eval_every: int = 0           # in optimizer steps (0: once an epoch); always at the end too
    eval_batches: int = 0         # evaluate on this many validation batches only (0: the whole validation set);
                                  # the test set is always read whole, once, at the end
    eval_batch_size: int = 1000
    checkpoint_every: int = 0     # in optimizer steps (0: at every evaluation); always at the end too
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | mps
    precision: str = "32"         # 32 | bf16 | 16 (autocast; a grad scaler for 16 only) | auto (bf16 where the
                                  # device computes it natively: AMX, AVX512_BF16, a recent GPU; else 32)
    compile: bool = False
    channels_last: bool = True    # for conv nets
    sync_bn: bool = False         # SyncBatchNorm under DDP (GPUs)


# the loop's keys that act only while a run trains: changing them for an evaluation would change nothing
TRAINING_ONLY = frozenset({"epochs", "max_steps", "batch_size", "accum_steps", "optimizer", "lr", "momentum", "betas",
                           "weight_decay", "schedule", "warmup_steps", "min_lr_ratio", "grad_clip", "ema",
                           "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints", "log_every", "seed",
                           "compile", "sync_bn"})


def default_config(task: tasks.Task) -> dict:
    cfg = defaults_of(TrainConfig)
    options = defaults_of(task.options)
    clash = set(cfg) & set(options)
    if clash:
        raise ValueError(f"task {task.name} redefines training keys {sorted(clash)}")
    return apply_overrides({**cfg, **options}, task.defaults, f"task {task.name}")


def resolve_config(task_name: str, config_file: str | None = None, overrides: dict | None = None) -> dict:
    """TrainConfig defaults <- the task's defaults <- a TOML file <- `overrides` (from --set and flags)."""
    task = tasks.get(task_name)
    cfg = default_config(task)
    if config_file:
        file_cfg = read_toml(config_file)
        file_cfg.pop("task", None)
        cfg = apply_overrides(cfg, file_cfg, config_file)
    cfg = apply_overrides(cfg, overrides or {}, "the command line")
    check_config(cfg, task)
    return cfg


def positive(hint: str = "") -> Range:
    return Range(1, hint=hint)


FRACTION = "a fraction of the data"
PROBABILITY = "a probability"
# The valid values of every numeric key of the loop and of the project's tasks, checked by `check_config`
# before any data is loaded. A task's options class may refine a key of its own in its `ranges`; a key named
# nowhere (a plug-in's) must be a finite number of at least 0.
RANGES: dict[str, Range] = {
    # the loop
    "epochs": Range(0, hint="passes over the training data (0 with --set max_steps=N: count steps instead)"),
    "max_steps": Range(0, hint="optimizer steps (0: run `epochs`)"),
    "batch_size": positive("examples per optimizer step"),
    "accum_steps": positive("micro-batches per optimizer step (1: no gradient accumulation)"),
    "lr": Range(0, math.inf, "()", hint="the learning rate, a step size such as 1e-3"),
    "momentum": Range(0, 1, "[)", "SGD's momentum, 0.9 is typical (0: none)"),
    "weight_decay": Range(0, hint="0 turns it off"),
    "warmup_steps": Range(0, hint="0: no warmup"),
    "min_lr_ratio": Range(0, 1, hint="the cosine ends at lr * min_lr_ratio"),
    "grad_clip": Range(0, hint="the largest global gradient norm (0: no clipping)"),
    "ema": Range(0, 1, "[)", "a decay per step (0.999 is typical; 0 turns it off)"),
    "eval_every": Range(0, hint="in optimizer steps (0: once an epoch)"),
    "eval_batches": Range(0, hint="0: the whole validation set"),
    "eval_batch_size": positive(),
    "checkpoint_every": Range(0, hint="in optimizer steps (0: at every evaluation)"),
    "keep_checkpoints": positive(),
    "log_every": positive("in optimizer steps"),
    "seed": Range(0, 2 ** 32 - 1),
    # probabilities and fractions
    "dropout": Range(0, 1, "[)", f"{PROBABILITY} of zeroing an activation (1 would zero them all)"),
    "label_smoothing": Range(0, 1, "[)", f"{PROBABILITY} mass spread over the other classes; 0.1 is typical"),
    "erase": Range(0, 1, hint=f"{PROBABILITY}: that of erasing a random rectangle of each training image"),
    "valid_fraction": Range(0, 1, "()", f"{FRACTION} held out for validation"),
    "test_fraction": Range(0, 1, "()", f"{FRACTION} held out for the test"),
    "val_fraction": Range(0, 0.5, "()", "the end of the text is held out twice: the test text, and the "
                                        "validation text before it"),
    "bn_momentum": Range(0, 1, hint="BatchNorm's running-statistics momentum; 0.1 is typical"),
    # shapes
    "stages": positive(), "blocks": positive(), "width": positive(), "hidden": positive(), "embed": positive(),
    "layers": positive(), "heads": positive(), "encoder_layers": positive(), "decoder_layers": positive(),
    "patch": positive("the side of a square patch, in pixels"), "image_size": positive("in pixels"),
    "latent": positive(), "samples": positive(), "labels_per_class": positive(), "test_sequences": positive(),
    "max_words": positive(), "max_tokens": positive(), "vocab_size": positive(),
    "context": Range(2, hint="tokens per window: at least one to read and one to predict"),
    "lag": Range(4, hint="steps per sequence, one marked value in each half"),
    "history": positive("steps the model sees"), "horizon": positive("steps it predicts"),
    "season": Range(0, hint="the seasonal period in steps (0: inferred)"),
    "train_samples": Range(0, hint="the first N training images (0: all of them)"),
    "crop_pad": Range(0, hint="pixels of padding before the random crop (0: no crop)"),
    "channels": Range(0, 3, hint="1 (grey), 3 (colour) or 0 (1 when every image is grey)"),
    "ngram_order": Range(0, hint="0: the order that best predicts the validation text"),
    "beam": positive("1: greedy decoding"),
    "length_penalty": Range(0, hint="GNMT's alpha; 0.6 is typical"),
    "forget_bias": Range(-math.inf, math.inf, "[]", "the LSTM's initial forget-gate bias; 1 is typical"),
}
DEFAULT_RANGE = Range(0)   # no key of the project takes a negative number


def ranges_of(task: tasks.Task | None) -> dict[str, Range]:
    return {**RANGES, **(getattr(task.options, "ranges", {}) if task else {})}


def check_config(cfg: dict, task: "tasks.Task | str | None" = None) -> None:
    """Every key's value checked against its choices or range (`RANGES`), then the keys that must fit each
    other; with `task` (a resolve_config does this), also the task's own checks (its options class's `check`).
    The messages name the key, the value and the fix: nothing here reads data."""
    task = tasks.get(task) if isinstance(task, str) else task
    choices = {"optimizer": ("adamw", "sgd"), "schedule": ("cosine", "constant"),
               "device": ("auto", "cpu", "cuda", "mps"), "precision": ("32", "bf16", "16", "auto")}
    for key, valid in choices.items():
        if cfg[key] not in valid:
            raise ConfigError(f"{key} must be one of {', '.join(valid)}, not {cfg[key]!r}")
    if not cfg["ema"] < 1:
        raise ConfigError(f"ema is a decay per step and must be below 1 (0.999 is typical; 0 turns it off), "
                          f"not {cfg['ema']}")
    defaults = default_config(task) if task else {}
    ranges = ranges_of(task)
    for key, value in cfg.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fix = f"{task.name}'s default is --set {key}={defaults[key]}" if key in defaults else ""
            check_range(key, value, ranges.get(key, DEFAULT_RANGE), fix)
    check_betas(cfg["betas"])
    if cfg["epochs"] <= 0 and cfg["max_steps"] <= 0:
        raise ConfigError("set epochs or max_steps to a positive number")
    if cfg["batch_size"] % cfg["accum_steps"]:
        raise ConfigError(f"batch_size {cfg['batch_size']} must divide evenly into accum_steps "
                          f"{cfg['accum_steps']} micro-batches: change --batch-size or --set accum_steps=N")
    check = getattr(task.options, "check", None) if task else None
    if check:
        check(cfg, task)


def check_betas(text: str) -> None:
    try:
        betas = [float(b) for b in text.split(",")]
    except ValueError:
        betas = []
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"betas takes two numbers such as 0.9,0.999, each at least 0 and below 1 (AdamW's "
                          f"decay rates of the gradient's mean and square), not {text!r}")
