"""Choosing the next token from a language model's logits: greedy, temperature, top-k and nucleus (top-p).

Sampling from the full softmax lets the long tail of unlikely tokens through often enough to derail a
text; top-k keeps a fixed number of candidates, and nucleus sampling (Holtzman et al. 2019) keeps the
smallest set whose probabilities add up to p, so it keeps few tokens where the model is sure and many
where it is not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, generator=None, *,
                top_p: float = 0.0) -> torch.Tensor:
    """One token per row from logits (B, V) -> (B, 1): greedy at temperature 0, else softmax(logits / T)
    over the top k (0: all), then over the nucleus of mass top_p (0: off)."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        ranked, order = logits.sort(-1, descending=True)
        probs = F.softmax(ranked, dim=-1)
        # a token is in the nucleus while the mass ranked above it is still short of p; the first always is
        outside = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, order, ranked.masked_fill(outside, float("-inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
