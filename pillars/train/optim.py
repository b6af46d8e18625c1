"""The optimizer and the learning-rate schedule."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from pillars.config import ConfigError


def make_optimizer(model: nn.Module, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and conv kernels only, not on biases and norm parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    try:
        betas = tuple(float(b) for b in cfg["betas"].split(","))
        assert len(betas) == 2
    except (ValueError, AssertionError):
        raise ConfigError(f"betas takes two numbers such as 0.9,0.999, not {cfg['betas']!r}") from None
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=betas, fused=device.type == "cuda")


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to lr * min_lr_ratio (or constant)."""
    base, warm = cfg["lr"], cfg["warmup_steps"]
    if step < warm:
        return base * (step + 1) / warm
    if cfg["schedule"] == "constant":
        return base
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = base * cfg["min_lr_ratio"]
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """W_ema <- decay * W_ema + (1 - decay) * W after every step, buffers (BatchNorm) too; None when off."""
    if decay <= 0:
        return None
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    return ema.requires_grad_(False)
