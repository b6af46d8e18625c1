"""Metrics. Evaluation is done in two halves so it can be sharded across processes: `*_sums` turns one
batch into additive sums (tensors that can be all-reduced), and the matching summary turns the sums of
the whole set into the reported figures."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def classification_sums(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = logits.float()
    return {
        "loss_sum": F.cross_entropy(logits, targets, reduction="sum"),
        "correct": (logits.argmax(-1) == targets).sum().float(),
        "count": torch.tensor(float(targets.numel()), device=targets.device),
    }


def classification_summary(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["count"], 1.0)
    return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n}


def language_model_sums(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums over the scored targets (weight > 0): negative log-likelihood in nats, tokens, and the
    characters those tokens spell (the weights), so that bits per character compare across tokenizers."""
    nll = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none")
    scored = (weights.flatten() > 0).float()
    return {"nll_sum": (nll * scored).sum(), "tokens": scored.sum(), "chars": weights.float().sum()}


def language_model_summary(sums: dict[str, float]) -> dict[str, float]:
    """loss (nats per token), perplexity = exp(loss), bits per character = total bits / characters."""
    loss = sums["nll_sum"] / max(sums["tokens"], 1.0)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_char": sums["nll_sum"] / math.log(2) / max(sums["chars"], 1.0)}


def regression_sums(pred: torch.Tensor, target: torch.Tensor, tolerance: float) -> dict[str, torch.Tensor]:
    """Squared and absolute errors, and `hits`: predictions within `tolerance` of the target (the 1997 LSTM
    paper counts a sequence as solved when its absolute error is below 0.04)."""
    err = (pred.float() - target.float())
    return {"sq_sum": err.pow(2).sum(), "abs_sum": err.abs().sum(), "hits": (err.abs() < tolerance).sum().float(),
            "count": torch.tensor(float(err.numel()), device=err.device)}


def regression_summary(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["count"], 1.0)
    return {"mse": sums["sq_sum"] / n, "mae": sums["abs_sum"] / n, "success": sums["hits"] / n}
