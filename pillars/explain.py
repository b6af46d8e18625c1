"""Experiments that make the intuitions of deep learning visible, each writing a PNG.

    pillars explain RUN_DIR

For an image classifier (a CNN):
  filters.png        the first layer's filters: oriented edge and blob detectors
  feature_maps.png   one image through an early, a middle and a late layer: edges, then parts, then
                     whole-object evidence at coarse resolution
  translation.png    test accuracy against a pixel shift of the input, for the CNN and for an MLP of
                     similar size trained on the same data: weight sharing and pooling make the CNN's
                     recognition (nearly) independent of where the pattern sits
  confusion.png      the confusion matrix on the test set
  gradcam.png        Grad-CAM (Selvaraju et al. 2017): where the last conv layer's evidence for the
                     predicted class lies
For a ViT, attention_maps.png (where the [CLS] token looks, layer by layer) takes the place of
feature_maps.png, and translation.png compares the ViT with the MLP.

For a language model (LSTM or GPT):
  memory_span.png    test loss with the history cut to k tokens: how far back the model reads
  cells.png          (char LSTM) the cells that track quotes, line position and the like
  attention_distance.png  (GPT) each head's mean distance attended, per layer: local and global heads
  kv_cache.png       (GPT) generation time with and without the KV cache

For a translation model: cross_attention.png, the decoder's attention over the source while it writes
its translation (a soft word alignment). For a forecaster: forecasts.png. For a GAN: interpolation.png
(walks between noise vectors) and dynamics.png (the discriminator's verdicts and the quality over training).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars.baselines import seasonal_naive_forecast
from pillars.config import write_text_atomic
from pillars.data import transforms
from pillars.devices import autocast
from pillars.plots import finish_line_plot, pyplot as _plt


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]


@torch.no_grad()
def predict_all(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Predicted classes, in batches of 256 (faster on a CPU than larger ones); images go in channels_last,
    which conv nets prefer on a CPU (the caller sets the model's format and any autocast)."""
    fmt = torch.channels_last if x.dim() == 4 else torch.contiguous_format
    return torch.cat([model(x[i:i + batch].contiguous(memory_format=fmt)).argmax(-1) for i in range(0, len(x), batch)])


def _show(ax, img: torch.Tensor, cmap="gray"):
    img = img.detach().float().cpu()
    if img.dim() == 3 and img.shape[0] == 3:
        img = img.permute(1, 2, 0)
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        ax.imshow(img.numpy())
    else:
        ax.imshow(img.squeeze(0).numpy(), cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- filters and feature maps

def plot_filters(model: nn.Module, path: Path) -> None:
    plt = _plt()
    name, first = conv_layers(model)[0]
    w = first.weight.detach().float().cpu()          # (out, in, k, k)
    w = w.mean(1) if w.shape[1] != 3 else w
    n = w.shape[0]
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show(ax, w[i], cmap="RdBu_r")
        else:
            ax.axis("off")
    fig.suptitle(f"first-layer filters ({name}): learned edge and blob detectors", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_feature_maps(model: nn.Module, image: torch.Tensor, path: Path, per_layer: int = 8) -> None:
    plt = _plt()
    layers = conv_layers(model)
    picks = [layers[0], layers[len(layers) // 2], layers[-1]]
    maps = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: maps.__setitem__(n, F.relu(out[0].float())))
             for n, m in picks]
    with torch.no_grad():
        model(image[None])
    for h in hooks:
        h.remove()
    fig, axes = plt.subplots(3, per_layer + 1, figsize=((per_layer + 1) * 1.2, 4.2), squeeze=False)
    for row, (label, (n, _)) in enumerate(zip(["early", "middle", "late"], picks)):
        fmap = maps[n]
        _show(axes[row][0], image)
        axes[row][0].set_ylabel(f"{label}\n{n}\n{tuple(fmap.shape[1:])}", fontsize=7)
        strongest = fmap.mean((1, 2)).argsort(descending=True)[:per_layer]
        for col, ch in enumerate(strongest.tolist()):
            _show(axes[row][col + 1], fmap[ch], cmap="viridis")
    fig.suptitle("feature maps of one test image, strongest channels: edges, then parts, then whole-object "
                 "evidence", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def plot_cls_attention(model: nn.Module, images: torch.Tensor, path: Path) -> None:
    """A ViT's attention from its [CLS] token to the patches, per layer (mean of heads), over a few test
    images: which parts of the image the classifying token reads at each depth."""
    g = model.cfg.image_size // model.cfg.patch
    with recorded(attention_modules(model)) as mods:
        model(images)
        maps = [m.weights[:, :, 0, 1:].float().mean(1).reshape(len(images), 1, g, g) for m in mods]
    plt = _plt()
    fig, axes = plt.subplots(len(images), len(maps) + 1, figsize=((len(maps) + 1) * 1.3, len(images) * 1.35),
                             squeeze=False)
    for r in range(len(images)):
        _show(axes[r][0], images[r])
        for c, m in enumerate(maps):
            up = F.interpolate(m[r:r + 1], size=images.shape[-2:], mode="nearest")[0, 0]
            _show(axes[r][c + 1], images[r])
            axes[r][c + 1].imshow(up.cpu().numpy(), cmap="jet", alpha=0.5)
            if r == 0:
                axes[r][c + 1].set_title(f"layer {c + 1}", fontsize=7)
    fig.suptitle("where the [CLS] token looks, layer by layer (attention to the patches, mean of heads)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- translation invariance

class MLP(nn.Sequential):
    """The control: every pixel has its own weights, so nothing is shared across positions."""

    def __init__(self, inputs: int, hidden: int, classes: int):
        super().__init__(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                         nn.ReLU(), nn.Linear(hidden // 2, classes))


def train_mlp(train_x, train_y, classes: int, params: int, epochs: int = 3, seed: int = 0) -> MLP:
    """An MLP with about `params` parameters, trained with AdamW on the same (unaugmented) images."""
    torch.manual_seed(seed)
    d = train_x[0].numel()
    hidden = max(32, int(-(d + classes / 2) + math.sqrt((d + classes / 2) ** 2 + 2 * params)))
    mlp = MLP(d, hidden, classes).to(train_x.device)
    opt = torch.optim.AdamW(mlp.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(train_x), device=train_x.device).split(256):
            loss = F.cross_entropy(mlp(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return mlp.eval()


def shift_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts, predict=None) -> list[float]:
    """Accuracy at each shift, averaged over moving the image right, left, down and up."""
    predict = predict or predict_all
    out = []
    for s in shifts:
        moves = [(s, 0), (-s, 0), (0, s), (0, -s)] if s else [(0, 0)]
        acc = [(predict(model, transforms.shift(x, dx, dy)) == y).float().mean().item() for dx, dy in moves]
        out.append(float(np.mean(acc)))
    return out


def plot_translation(shifts, curves: dict[str, list[float]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, acc in curves.items():
        ax.plot(list(shifts), [100 * a for a in acc], marker="o", label=label)
    finish_line_plot(fig, ax, path, "translation: the CNN recognises a pattern wherever it sits",
                     "shift of the test images (pixels)", "test accuracy (%)")


# ----------------------------------------------------------------------------- confusion and Grad-CAM

def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, classes: int) -> np.ndarray:
    return torch.bincount(y * classes + pred, minlength=classes * classes).view(classes, classes).cpu().numpy()


def plot_confusion(cm: np.ndarray, names: list[str], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    frac = cm / cm.sum(1, keepdims=True).clip(min=1)
    ax.imshow(frac, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix on the test set (accuracy {np.trace(cm) / cm.sum():.2%})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def last_feature_map(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The module whose output is the network's final spatial feature map (the last (N, C, H, W) output
    with H, W > 1 to be completed in a forward pass): Grad-CAM's layer."""
    done = []
    hooks = [m.register_forward_hook(lambda mod, i, o: done.append(mod) if torch.is_tensor(o) and o.dim() == 4
                                     and o.shape[-1] > 1 else None) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return done[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-activation maps: ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d(score)/dA_k, for the
    predicted class of each image; returned upsampled to the image size, each scaled to [0, 1]."""
    store = {}
    hook = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    x = x.clone().requires_grad_(True)
    logits = model(x)
    hook.remove()
    pred = logits.argmax(-1)
    score = logits.gather(1, pred[:, None]).sum()
    grads, = torch.autograd.grad(score, store["a"])
    cam = F.relu((grads.mean((2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam / cam.flatten(1).max(1).values.clamp(min=1e-8)[:, None, None]
    return cam.detach(), pred


def plot_grad_cam(images, cams, preds, labels, names: list[str], path: Path) -> None:
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(n * 1.6, 4.0), squeeze=False)
    for i in range(n):
        _show(axes[0][i], images[i])
        axes[0][i].set_title(f"{names[labels[i]]}", fontsize=7)
        _show(axes[1][i], images[i])
        axes[1][i].imshow(cams[i].cpu().numpy(), cmap="jet", alpha=0.45)
        axes[1][i].set_title(f"-> {names[preds[i]]}", fontsize=7,
                             color="green" if preds[i] == labels[i] else "red")
    fig.suptitle("Grad-CAM: where the evidence for the predicted class lies", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver

def explain_image_classifier(run_dir: Path, job, log=print, shifts=range(0, 9), mlp_epochs: int = 3,
                             precision: str = "32", shift_images: int = 2000, confusion_images: int = 0) -> dict:
    """Filters, feature maps (or a ViT's [CLS] attention), the confusion matrix (of the whole test set, or
    of its first `confusion_images`), Grad-CAM and the translation experiment (on the first `shift_images`
    test images). Predictions run under the run's own autocast `precision`, as its test accuracy was
    measured."""
    model = job.model.float().eval()
    if job.conv:
        model = model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device

    def predict(m, x):
        with autocast(device, precision):
            return predict_all(m, x)
    names = job.inputs.classes
    test_x, test_y = job.test
    train_x, train_y = job.train.tensors
    out = {}

    vit = hasattr(model, "blocks")     # a Vision Transformer: one conv layer, the patch embedding
    plot_filters(model, run_dir / "filters.png")
    out["filters"] = "filters.png"
    if vit:
        plot_cls_attention(model, test_x[:4], run_dir / "attention_maps.png")
        out["attention_maps"] = "attention_maps.png"
    else:
        plot_feature_maps(model, test_x[0], run_dir / "feature_maps.png")
        out["feature_maps"] = "feature_maps.png"

    n = confusion_images or len(test_x)
    cm = confusion_matrix(predict(model, test_x[:n]), test_y[:n], len(names))
    plot_confusion(cm, names, run_dir / "confusion.png")
    out["accuracy"], out["confusion_images"] = float(np.trace(cm) / cm.sum()), min(n, len(test_x))

    layer = last_feature_map(model, test_x[:1])
    pick = torch.cat([torch.nonzero(test_y == c).flatten()[:1] for c in range(min(len(names), 8))])
    cams, cam_pred = grad_cam(model, test_x[pick], layer)
    plot_grad_cam(test_x[pick], cams, cam_pred.tolist(), test_y[pick].tolist(), names, run_dir / "gradcam.png")

    kind = "ViT" if vit else "CNN"
    log(f"training an MLP with about as many parameters as the {kind} ({sum(p.numel() for p in model.parameters()):,}) "
        "for the translation experiment")
    mlp = train_mlp(train_x, train_y, len(names), sum(p.numel() for p in model.parameters()), mlp_epochs)
    sub_x, sub_y = test_x[:shift_images], test_y[:shift_images]
    curves = {kind: shift_accuracy(model, sub_x, sub_y, shifts, predict),
              "MLP": shift_accuracy(mlp, sub_x, sub_y, shifts, predict)}
    plot_translation(shifts, curves, run_dir / "translation.png")
    out["translation"] = {k: [round(a, 4) for a in v] for k, v in curves.items()}
    out["shifts"] = list(shifts)
    write_text_atomic(run_dir / "explain.json", json.dumps(out, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------- language models

@torch.no_grad()
def memory_span(model: nn.Module, stream: torch.Tensor, spans: list[int], positions: int = 4096, seed: int = 0,
                batch: int = 256) -> dict[int, float]:
    """Mean loss in bits per token of predicting stream[p] from only the k tokens before it, for each k in
    `spans`, at the same `positions` random places of the held-out stream."""
    g = torch.Generator().manual_seed(seed)
    longest = max(spans)
    if len(stream) <= longest + 1:
        raise ValueError(f"the held-out text has {len(stream)} tokens; the longest span needs {longest + 2}")
    places = torch.randint(longest, len(stream), (positions,), generator=g)
    out = {}
    for k in spans:
        total = 0.0
        for i in range(0, positions, batch):
            p = places[i:i + batch]
            windows = stream[(p[:, None] - k + torch.arange(k)).to(stream.device)]
            logits = model(windows)[0][:, -1].float()
            total += F.cross_entropy(logits, stream[p.to(stream.device)], reduction="sum").item()
        out[k] = total / positions / math.log(2)
    return out


def plot_memory_span(span: dict[int, float], reference: dict[str, float], unit: str, name: str, path: Path) -> None:
    fig, ax = _plt().subplots(figsize=(5.5, 3.8))
    ks = sorted(span)
    ax.plot(ks, [span[k] for k in ks], "o-", label=f"{name}, history cut to k tokens")
    for (name, value), style in zip(reference.items(), (":", "--")):
        ax.axhline(value, color="grey", ls=style, lw=1, label=name)
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(ks, [str(k) for k in ks])
    finish_line_plot(fig, ax, path, f"memory span: how much history the {name} uses",
                     "history the model may read (tokens)", f"test loss ({unit})")


def text_signals(text: str) -> dict[str, np.ndarray]:
    """Per-character properties of a text that a reader tracks without thinking about it."""
    quote, paren, since_newline, since_stop = [], [], [], []
    inside_q, depth, n_line, n_stop = False, 0, 0, 0
    for ch in text:
        if ch in '"“”':
            inside_q = (ch == "“") or (ch == '"' and not inside_q)
        depth = max(0, depth + (ch == "(") - (ch == ")"))
        n_line = 0 if ch == "\n" else n_line + 1
        n_stop = 0 if ch in ".!?\n" else n_stop + 1
        quote.append(inside_q)
        paren.append(depth > 0)
        since_newline.append(n_line)
        since_stop.append(n_stop)
    return {"inside quotation marks": np.array(quote, float), "inside parentheses": np.array(paren, float),
            "characters since the last full stop": np.array(since_stop, float),
            "characters since the line began": np.array(since_newline, float)}


def readable_cells(cells: np.ndarray, signals: dict[str, np.ndarray]) -> dict[str, tuple[int, float]]:
    """For each signal, the cell whose activation correlates best with it (index, correlation)."""
    c = (cells - cells.mean(0)) / (cells.std(0) + 1e-8)
    out = {}
    for name, s in signals.items():
        if s.std() == 0:
            continue
        z = (s - s.mean()) / s.std()
        corr = (c * z[:, None]).mean(0)
        best = int(np.abs(corr).argmax())
        out[name] = (best, float(corr[best]))
    return out


def plot_cell_heat_maps(text: str, cells: np.ndarray, picks: dict[str, tuple[int, float]],
                        signals: dict[str, np.ndarray], path: Path, width: int = 90, rows: int = 5) -> None:
    """Each picked cell's activation as the background colour of the characters it read (Karpathy et al.
    2015), over a passage where its signal changes."""
    plt = _plt()
    fig, axes = plt.subplots(len(picks), 1, figsize=(width * 0.105, len(picks) * (rows * 0.22 + 0.45)),
                             squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for ax, (name, (cell, corr)) in zip(axes[:, 0], picks.items()):
        change = np.flatnonzero(np.diff(signals[name]) != 0)
        start = max(0, int(change[min(len(change) - 1, 2)]) - width) if len(change) else 0
        span = slice(start, min(len(text), start + width * rows))
        act = np.tanh(cells[span, cell])
        ax.set_xlim(0, width)
        ax.set_ylim(rows, 0)
        ax.axis("off")
        ax.set_title(f"cell {cell}: {name} (correlation {corr:+.2f})", fontsize=8, loc="left")
        row, col = 0, 0
        for ch, a in zip(text[span], act):
            if row >= rows:
                break
            ax.add_patch(plt.Rectangle((col, row), 1, 1, color=cmap((a + 1) / 2), lw=0))
            if ch != "\n":
                ax.text(col + 0.5, row + 0.55, ch, ha="center", va="center", fontsize=6, family="monospace")
            col += 1
            if ch == "\n" or col >= width:
                row, col = row + 1, 0
    fig.suptitle("LSTM cells that track something readable (blue negative, red positive activation)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def explain_language_model(run_dir: Path, job, baselines: dict, log=print,
                           spans=(1, 2, 4, 8, 16, 32, 64, 128, 256), positions: int = 4096,
                           cell_chars: int = 50000) -> dict:
    """Memory span (at `positions` random test positions), readable cells (over `cell_chars` test
    characters, LSTMs), attention distance and KV-cache speed (GPTs). `job`: a tasks.language.LanguageJob."""
    model = job.model.float().eval()
    tok = job.tokenizer
    device = next(model.parameters()).device
    stream = job.test_ids.to(device)
    unit = "bits per character" if tok.lossless else "bits per word"
    log("memory span: test loss with the history cut to k tokens")
    longest = min(len(stream) - 2, getattr(model.cfg, "context", len(stream)))   # a GPT reads at most its context
    span = memory_span(model, stream, [k for k in spans if k <= longest], positions=positions)
    reference = {}
    if "kneser_ney_order" in baselines:   # over the whole test set, not only the sampled positions
        value = (baselines["kneser_ney_bits_per_char"] if tok.lossless
                 else math.log2(baselines["kneser_ney_perplexity"]))
        reference[f"Kneser-Ney {baselines['kneser_ney_order']}-gram, whole test set"] = value
    name = type(model).__name__ if getattr(model.cfg, "cell", "") != "lstm" else "LSTM"
    plot_memory_span(span, reference, unit, name, run_dir / "memory_span.png")
    out = {"memory_span": {str(k): round(v, 4) for k, v in span.items()}, "memory_span_unit": unit}
    if hasattr(model, "blocks"):   # a GPT: which heads read far, and what the KV cache saves
        dist = attention_distance(model, stream)
        plot_attention_distance(dist, model.cfg.context, "token", run_dir / "attention_distance.png")
        out["attention_distance"] = [[round(float(d), 2) for d in layer] for layer in dist]
        lengths = [n for n in (32, 64, 128, 256) if n <= model.cfg.context] or [model.cfg.context]
        log(f"generation time with and without the KV cache, {lengths[-1]} tokens")
        curve = kv_cache_curve(model, lengths)
        plot_kv_cache(lengths, curve, run_dir / "kv_cache.png")
        out["kv_cache_seconds"] = {"tokens": lengths, **{k: [round(s, 4) for s in v] for k, v in curve.items()}}
    if tok.kind == "char" and getattr(model.cfg, "cell", "") == "lstm":
        text = job.test_text[:cell_chars]
        log(f"reading the LSTM's cells over {len(text):,} test characters")
        with torch.no_grad():
            cells = model.cells(torch.from_numpy(tok.encode(text))[None].to(device))[0].cpu().numpy()
        signals = text_signals(text)
        picks = readable_cells(cells, signals)
        plot_cell_heat_maps(text, cells, picks, signals, run_dir / "cells.png")
        out["cells"] = {name: {"cell": c, "correlation": round(r, 3)} for name, (c, r) in picks.items()}
    write_text_atomic(run_dir / "explain.json", json.dumps(out, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------- forecasts

@torch.no_grad()
def plot_forecasts(job, path: Path, n: int = 4) -> None:
    """A few held-out days: the history's last three days, what happened, the LSTM's forecast and the
    seasonal-naive one, in the series' own units. `job`: a tasks.sequences.ForecastJob."""
    model = job.model.float().eval()
    mean, std, season = job.mean, job.std, job.season
    x, y = job.test
    picks = torch.linspace(0, len(x) - 1, n).long()
    pred = model(x[picks]).cpu().numpy() * std + mean
    hist = x[picks, :, 0].cpu().numpy() * std + mean
    actual = y[picks].cpu().numpy() * std + mean
    H, F_ = hist.shape[1], actual.shape[1]
    show = min(H, 72)
    plt = _plt()
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(range(-show, 0), hist[i, -show:], color="black", lw=1, label="history")
        ax.plot(range(F_), actual[i], color="black", lw=1, ls="--", label="what happened")
        ax.plot(range(F_), pred[i], color="tab:red", lw=1.5, label="LSTM forecast")
        if season <= H:
            ax.plot(range(F_), seasonal_naive_forecast(hist[i], F_, season), color="tab:blue", lw=1, ls=":",
                    label="seasonal naive")
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel("steps from the forecast time")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(job.series)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("forecasts of the held-out period", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- transformers

def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of each block, in order (an encoder-decoder's cross-attention: its
    `cross_attention`)."""
    return [b.attn for b in model.modules() if hasattr(b, "attn")]


class recorded:
    """Within the block, the attention modules keep their weights (the explicit path is taken)."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules

    def __enter__(self):
        for m in self.modules:
            m.record = True
        return self.modules

    def __exit__(self, *exc):
        for m in self.modules:
            m.record, m.weights = False, None


@torch.no_grad()
def attention_distance(model: nn.Module, stream: torch.Tensor, windows: int = 16, seed: int = 0) -> np.ndarray:
    """Mean attention distance (layers, heads) of a causal LM over `windows` full-context windows of the
    held-out stream: sum_j w_ij |i - j| averaged over every query i, as Dosovitskiy et al. (2020, fig. 7)
    measured for ViT. A head with a small distance reads the last few tokens (local, n-gram-like); a large
    one reads far back."""
    T = model.cfg.context
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(stream) - T, (windows,), generator=g)
    x = stream[(starts[:, None] + torch.arange(T)).to(stream.device)]
    pos = torch.arange(T, device=stream.device)
    dist = (pos[:, None] - pos[None]).abs().float()     # |i - j|
    with recorded(attention_modules(model)) as mods:
        model(x)
        return np.array([(m.weights.float() * dist).sum(-1).mean((0, 2)).cpu().numpy() for m in mods])


def plot_attention_distance(dist: np.ndarray, context: int, unit: str, path: Path) -> None:
    """Each head's mean attention distance per layer, against uniform attention over the past."""
    fig, ax = _plt().subplots(figsize=(5.5, 3.8))
    layers, heads = dist.shape
    for h in range(heads):
        ax.plot(np.arange(1, layers + 1), dist[:, h], "o", alpha=0.8, label=f"head {h + 1}")
    ax.axhline((context - 1) / 4, color="grey", ls=":", lw=1,
               label=f"uniform over the past ({(context - 1) / 4:.0f})")
    ax.set_yscale("log")
    ax.set_xticks(range(1, layers + 1))
    finish_line_plot(fig, ax, path, "mean attention distance per head: local and global heads",
                     "layer", f"mean distance attended ({unit}s)")


@torch.no_grad()
def generation_speed(model: nn.Module, prompt: torch.Tensor, length: int, use_cache: bool, repeats: int = 1) -> float:
    """New tokens per second of `model.generate` (greedy, so every run does the same work), after one
    untimed run of 8 tokens."""
    model.generate(prompt, 8, temperature=0.0, use_cache=use_cache)
    sync = torch.cuda.synchronize if prompt.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        model.generate(prompt, length, temperature=0.0, use_cache=use_cache)
    sync()
    return repeats * length * len(prompt) / (time.perf_counter() - start)


def kv_cache_curve(model: nn.Module, lengths: list[int]) -> dict[str, list[float]]:
    """Seconds to generate each of `lengths` tokens (batch 1, after a 1-token prompt) with and without the
    KV cache. Without it each step re-reads the whole sequence, so the time grows with the square of the
    length; with it each step reads one token, so it grows linearly."""
    prompt = torch.zeros(1, 1, dtype=torch.long, device=next(model.parameters()).device)
    return {name: [n / generation_speed(model, prompt, n, use_cache) for n in lengths]
            for name, use_cache in (("KV cache", True), ("recomputing", False))}


def plot_kv_cache(lengths: list[int], curve: dict[str, list[float]], path: Path) -> None:
    fig, ax = _plt().subplots(figsize=(5.5, 3.8))
    for name, secs in curve.items():
        ax.plot(lengths, secs, "o-", label=name)
    n = lengths[-1]
    ratio = curve["recomputing"][-1] / curve["KV cache"][-1]
    finish_line_plot(fig, ax, path, f"generation time, batch 1: the cache is {ratio:.1f}x faster at {n} tokens",
                     "tokens generated", "seconds")


@torch.no_grad()
def cross_attention(model: nn.Module, src: torch.Tensor, hyp: list[int]) -> np.ndarray:
    """The decoder's cross-attention weights while it reads its own translation `hyp` (teacher-forced,
    bos first): (decoder layers, heads, target tokens + 1 for eos, source tokens)."""
    cfg = model.cfg
    tgt = torch.tensor([[cfg.bos_id, *hyp]], device=src.device)[:, :cfg.max_len]
    return model.cross_attention(src, tgt)[:, 0].float().cpu().numpy()


def plot_cross_attention(weights: np.ndarray, src_pieces: list[str], tgt_pieces: list[str], path: Path) -> None:
    """Source-target alignment: the last decoder layer's cross-attention (an LSTM's one attention), averaged over
    its heads."""
    plot_cross_attentions([("cross-attention of the last decoder layer (mean of heads)", weights, src_pieces,
                            tgt_pieces)], path)


def plot_cross_attentions(panels: list[tuple[str, np.ndarray, list[str], list[str]]], path: Path) -> None:
    """One alignment map a panel, side by side: (title, weights, source pieces, translation pieces) each, the
    weights as `cross_attention` returns them."""
    plt = _plt()
    size = [(max(5.0, 0.32 * len(s) + 2), max(4.0, 0.3 * len(t) + 1.5)) for _, _, s, t in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(w for w, _ in size), max(h for _, h in size)),
                             squeeze=False)
    for ax, (title, weights, src_pieces, tgt_pieces) in zip(axes[0], panels):
        ax.imshow(weights[-1].mean(0)[:len(tgt_pieces), :len(src_pieces)], cmap="Greys", aspect="auto", vmin=0)
        ax.set_xticks(range(len(src_pieces)), src_pieces, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt_pieces)), tgt_pieces, fontsize=7)
        ax.set_xlabel("source tokens")
        ax.set_ylabel("translation tokens, as generated")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def translation_attention(job, source: str = "") -> tuple[str, np.ndarray, list[str], list[str]]:
    """A translation model's greedy output for `source` (default: the job's held-out example), the decoder's
    cross-attention while it wrote it, and the source and output tokens as they read."""
    model, tok = job.model.float().eval(), job.tokenizer
    src = torch.from_numpy(tok.encode(source or job.example_source))[None].to(next(model.parameters()).device)
    src = src[:, :model.cfg.max_len]
    hyp = model.greedy(src)[0]
    return (tok.decode(hyp), cross_attention(model, src, hyp), token_pieces(tok, src[0].tolist()),
            token_pieces(tok, hyp) + ["<eos>"])


def token_pieces(tok, ids) -> list[str]:
    """How each token reads on its own (byte-level BPE: the leading space shown as '_')."""
    return [tok.decode([int(i)]).replace(" ", "_") or "?" for i in ids]


def explain_translation(run_dir: Path, job, source: str = "", log=print) -> dict:
    """The decoder's cross-attention over `source` (default: the job's held-out example) while it writes its
    greedy translation. `job`: a tasks.translation.TranslationJob."""
    source = source or job.example_source
    translation, weights, src_pieces, tgt_pieces = translation_attention(job, source)
    log(f"source:      {source}\ntranslation: {translation}")
    plot_cross_attention(weights, src_pieces, tgt_pieces, run_dir / "cross_attention.png")
    out = {"source": source, "translation": translation, "cross_attention": "cross_attention.png"}
    write_text_atomic(run_dir / "explain.json", json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


# ----------------------------------------------------------------------------- GANs

def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between noise vectors (B, D) at fractions t (T,) -> (B, T, D): it keeps
    the norm typical of Gaussian noise, which a straight line through the middle would shrink."""
    cos = F.cosine_similarity(a, b, dim=1).clamp(-1 + 1e-7, 1 - 1e-7)[:, None, None]
    omega = torch.acos(cos)
    t = t[None, :, None]
    return (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / torch.sin(omega)


@torch.no_grad()
def plot_interpolation(model: nn.Module, conditional: bool, classes: list[str], path: Path, rows: int = 8,
                       steps: int = 10, seed: int = 0) -> None:
    """Rows of images along a path between two noise vectors: a smooth change of garment (or digit)
    shows that G has learned a continuous space rather than memorised a list of images."""
    from pillars.plots import image_grid, save_image_grid
    g = torch.Generator().manual_seed(seed)
    a, b = model.noise(rows, g), model.noise(rows, g)
    z = slerp(a, b, torch.linspace(0, 1, steps, device=a.device)).flatten(0, 1)
    y = None
    if conditional:
        y = (torch.arange(rows, device=a.device) % len(classes)).repeat_interleave(steps)
    model.eval()
    images = (model.generator(z, y).float() + 1) / 2
    save_image_grid(image_grid(images, nrow=steps), path, scale=3)


def plot_gan_dynamics(lines: list[dict], path: Path) -> None:
    """The forger and the detective: D's mean output on real and on generated training images over
    training, against 1/2, where D can no longer tell them apart (the 2014 paper's equilibrium);
    beside it the quality (Frechet distance or Parzen log-likelihood) at each evaluation on the
    validation split (the test split for runs made before there was one)."""
    train = [ln for ln in lines if ln["split"] == "train" and "d_real" in ln]
    split = "valid" if any(ln["split"] == "valid" for ln in lines) else "test"
    evals = [ln for ln in lines if ln["split"] == split]
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [ln["step"] for ln in train]
    ax.plot(steps, [ln["d_real"] for ln in train], label="D(x), real images")
    ax.plot(steps, [ln["d_fake"] for ln in train], label="D(G(z)), generated images")
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="1/2: cannot tell them apart")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("discriminator's mean probability 'real'")
    ax.set_title("forger and detective: the discriminator's verdicts", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    key = next((k for k in ("fid_fashion", "parzen_ll") if evals and k in evals[0]), None)
    if key:
        bx.plot([ln["step"] for ln in evals], [ln[key] for ln in evals], "o-", color="tab:red")
        if key == "fid_fashion":
            bx.set_yscale("log")
        bx.set_xlabel("step")
        bx.set_ylabel(key)
        bx.set_title(f"quality on the {'validation' if split == 'valid' else 'test'} set", fontsize=9)
        bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def explain_gan(run_dir: Path, job) -> dict:
    """interpolation.png and dynamics.png of a GAN run (a GANJob: its classes, whether it is conditional)."""
    model = job.model.float()
    plot_interpolation(model, job.conditional, job.classes, run_dir / "interpolation.png")
    from pillars.runs import read_metrics
    lines = read_metrics(run_dir)
    plot_gan_dynamics(lines, run_dir / "dynamics.png")
    train = [ln for ln in lines if ln["split"] == "train" and "d_real" in ln]
    tail = train[-max(1, len(train) // 10):]       # the last tenth of training
    out = {"interpolation": "interpolation.png", "dynamics": "dynamics.png",
           "d_real_last_tenth": float(np.mean([ln["d_real"] for ln in tail])) if tail else None,
           "d_fake_last_tenth": float(np.mean([ln["d_fake"] for ln in tail])) if tail else None}
    write_text_atomic(run_dir / "explain.json", json.dumps(out, indent=2) + "\n")
    return out
