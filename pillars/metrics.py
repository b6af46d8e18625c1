"""Metrics. Evaluation is done in two halves so it can be sharded across processes: `*_sums` turns one
batch into additive sums (tensors that can be all-reduced), and the matching summary turns the sums of
the whole set into the reported figures."""
from __future__ import annotations

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
