"""Metrics. Evaluation is done in two halves so it can be sharded across processes: `*_sums` turns one
batch into additive sums (tensors that can be all-reduced), and the matching summary turns the sums of
the whole set into the reported figures."""
from __future__ import annotations

import math

import numpy as np
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


def token_sums(logits: torch.Tensor, targets: torch.Tensor, pad: int) -> dict[str, torch.Tensor]:
    """Teacher-forced cross-entropy and next-token accuracy over the targets that are not padding."""
    real = targets != pad
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return {"nll_sum": (nll * real.flatten()).sum(), "tokens": real.sum().float(),
            "correct": ((logits.argmax(-1) == targets) & real).sum().float()}


def token_summary(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["tokens"], 1.0)
    return {"loss": sums["nll_sum"] / n, "token_accuracy": sums["correct"] / n}


def translation_sums(hypotheses: list[str], references: list[str], device=None) -> dict[str, torch.Tensor]:
    """sacreBLEU's sufficient statistics for corpus BLEU (n-gram matches and totals, lengths) and chrF
    (character and word n-gram statistics), summed over the sentences: they add across batches and
    processes, and the summary turns the sums of the whole set into sacreBLEU's own corpus scores."""
    from sacrebleu.metrics import BLEU, CHRF
    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        stats = np.sum(np.array(metric._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64), 0)
        for i, v in enumerate(stats):
            out[f"{name}_stat{i:02d}"] = torch.tensor(float(v), device=device)
    return out


def translation_summary(sums: dict[str, float]) -> dict[str, float]:
    from sacrebleu.metrics import BLEU, CHRF
    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        stats = [sums[k] for k in sorted(sums) if k.startswith(f"{name}_stat")]
        out[name] = float(metric._compute_score_from_stats(stats).score)
    return out


# ----------------------------------------------------------------------------- generative models

def feature_sums(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """The additive moments of a batch of feature vectors (N, D): count, sum and sum of outer products,
    from which the mean and covariance of the whole set follow (`gaussian`)."""
    f = (features.cpu() if features.device.type == "mps" else features).double()   # MPS has no float64
    return {"feat_n": torch.tensor(float(len(f)), device=f.device, dtype=torch.float64),
            "feat_sum": f.sum(0), "feat_outer": f.T @ f}


def gaussian(sums: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance from `feature_sums` added over a set."""
    n = sums["feat_n"]
    mu = np.asarray(sums["feat_sum"]) / n
    cov = (np.asarray(sums["feat_outer"]) - n * np.outer(mu, mu)) / max(n - 1, 1)
    return mu, cov


def feature_gaussian(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of one set of feature vectors held at once (`feature_sums`, then `gaussian`)."""
    return gaussian({k: v.item() if v.dim() == 0 else v.cpu().numpy() for k, v in feature_sums(features).items()})


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The Frechet distance between two Gaussians (Dowson & Landau 1982), as FID (Heusel et al. 2017)
    computes it between the feature statistics of real and generated images:
        ||mu1 - mu2||^2 + Tr(cov1) + Tr(cov2) - 2 Tr((cov1 cov2)^(1/2)).
    Tr((C1 C2)^(1/2)) = Tr((C1^(1/2) C2 C1^(1/2))^(1/2)), a symmetric matrix: computed from eigenvalues,
    which stays exact when a covariance is singular (features that are always 0 after a ReLU)."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


def parzen_log_likelihood(samples: torch.Tensor, x: torch.Tensor, sigma: float, batch: int = 100) -> torch.Tensor:
    """log p(x) in nats of each row of x (N, D) under a Gaussian Parzen window of width sigma on the
    samples (M, D), the estimate of Goodfellow et al. (2014, table 1; Breuleux et al. 2011):
        log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log M - D/2 log(2 pi sigma^2)."""
    s = samples.double()
    M, D = s.shape
    out = []
    for xb in x.double().split(batch):
        d2 = torch.cdist(xb, s).pow(2)
        out.append(torch.logsumexp(-d2 / (2 * sigma ** 2), dim=1))
    return torch.cat(out) - math.log(M) - D / 2 * math.log(2 * math.pi * sigma ** 2)


# ----------------------------------------------------------------------------- a run's summary as text

def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def result_text(summary: dict) -> str:
    """A run's headline figure on the test set, e.g. "94.56% accuracy" or "1.912 bits/char"."""
    f = summary["final"]
    if "fid_fashion" in f:
        text = f"FID (project classifier) {f['fid_fashion']:.1f}, smallest class share {_pct(f['min_class_share'])}"
        return text + (f", class asked for {_pct(f['class_accuracy'])}" if "class_accuracy" in f else "")
    if "parzen_ll" in f:
        return f"Parzen log-likelihood {f['parzen_ll']:.1f} nats"
    if "bleu" in f:
        beam = summary.get("beam", 1)
        return f"BLEU {f['bleu']:.1f}, chrF {f['chrf']:.1f} ({'beam' if beam > 1 else 'greedy'})"
    if "bits_per_char" in f:
        return f"{f['bits_per_char']:.3f} bits/char"
    if "perplexity" in f:
        return f"perplexity {f['perplexity']:.1f}"
    if "mase" in f:
        return f"MASE {f['mase']:.3f} (MAE {f['mae']:.2f})"
    if "accuracy" in f:
        return f"{_pct(f['accuracy'])} accuracy"
    return f"{summary['metric']} {f[summary['metric']]:.4g}"


# summary["baselines"] keys: (name, format); the CHANCE ones say what no learning at all would score
BASELINE_NAMES = {
    "kneser_ney_bits_per_char": ("Kneser-Ney", "{:.3f} bits/char"),
    "kneser_ney_perplexity": ("Kneser-Ney", "perplexity {:.1f}"),
    "unigram_bits_per_char": ("character frequencies alone", "{:.3f} bits/char"),
    "seasonal_naive_mase": ("seasonal naive", "MASE {:.3f}"),
    "naive_mase": ("naive", "MASE {:.3f}"),
    "tfidf_logreg_accuracy": ("TF-IDF + logistic regression", "{:.2%}"),
    "vader_accuracy": ("VADER", "{:.2%}"),
    "majority_accuracy": ("majority class", "{:.2%}"),
    "fid_fashion_real_train_vs_test": ("real train vs real test", "{:.2f}"),
    "fid_fashion_untrained_generator": ("untrained generator", "{:.0f}"),
    "parzen_ll_of_the_training_digits": ("training digits themselves", "{:.1f} nats"),
}
CHANCE = {"unigram_bits_per_char", "fid_fashion_untrained_generator", "majority_accuracy"}


def baselines_text(summary: dict, which: str = "all") -> str:
    """The run's baselines on the same test set as text; `which`: "all", "baselines" (models to beat) or
    "chance" (what no learning scores)."""
    b = summary.get("baselines", {})
    parts, seen = [], set()
    for key, (name, fmt) in BASELINE_NAMES.items():
        if key not in b or name in seen or (which == "baselines" and key in CHANCE) or (
                which == "chance" and key not in CHANCE):
            continue
        if key == "kneser_ney_perplexity" and "kneser_ney_bits_per_char" in b:
            continue
        seen.add(name)
        if key.startswith("kneser_ney") and "kneser_ney_order" in b:
            name = f"Kneser-Ney {b['kneser_ney_order']:.0f}-gram"
        parts.append(f"{name} {fmt.format(b[key])}")
    return "; ".join(parts)
