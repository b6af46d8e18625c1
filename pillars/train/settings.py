"""The loop's configuration keys, and how a run's whole configuration is resolved and checked."""
from __future__ import annotations

from dataclasses import dataclass

from pillars import tasks
from pillars.config import ConfigError, apply_overrides, defaults_of, read_toml


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
    check_config(cfg)
    return cfg


AT_LEAST_ONE = {"batch_size", "accum_steps", "keep_checkpoints", "log_every", "eval_batch_size", "stages",
                "blocks", "width", "hidden", "image_size", "labels_per_class", "context", "embed", "layers",
                "heads", "vocab_size", "history", "horizon", "test_sequences", "max_words"}


def check_config(cfg: dict) -> None:
    choices = {"optimizer": ("adamw", "sgd"), "schedule": ("cosine", "constant"),
               "device": ("auto", "cpu", "cuda", "mps"), "precision": ("32", "bf16", "16", "auto")}
    for key, valid in choices.items():
        if cfg[key] not in valid:
            raise ConfigError(f"{key} must be one of {', '.join(valid)}, not {cfg[key]!r}")
    for key, value in cfg.items():   # no key of the project takes a negative number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = 1 if key in AT_LEAST_ONE else 0
            if value < low:
                raise ConfigError(f"{key} must be at least {low}, not {value}")
    for key in ("erase", "dropout"):   # probabilities (the tasks check their own fractions)
        if key in cfg and cfg[key] > 1:
            raise ConfigError(f"{key} must be between 0 and 1, not {cfg[key]}")
    if cfg["ema"] >= 1:
        raise ConfigError(f"ema is a decay per step and must be below 1 (0.999 is typical; 0 turns it off), "
                          f"not {cfg['ema']}")
    if cfg["epochs"] <= 0 and cfg["max_steps"] <= 0:
        raise ConfigError("set epochs or max_steps to a positive number")
