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
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars.data import transforms
from pillars.plots import finish_line_plot, pyplot as _plt


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]


@torch.no_grad()
def predict_all(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)])


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


def shift_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts) -> list[float]:
    """Accuracy at each shift, averaged over moving the image right, left, down and up."""
    out = []
    for s in shifts:
        moves = [(s, 0), (-s, 0), (0, s), (0, -s)] if s else [(0, 0)]
        acc = [(predict_all(model, transforms.shift(x, dx, dy)) == y).float().mean().item() for dx, dy in moves]
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

def explain_image_classifier(run_dir: Path, job, log=print, shifts=range(0, 9), mlp_epochs: int = 3) -> dict:
    model = job.model.float().eval()
    names = job.inputs.classes
    test_x, test_y = job.test
    train_x, train_y = job.train.tensors
    out = {}

    plot_filters(model, run_dir / "filters.png")
    plot_feature_maps(model, test_x[0], run_dir / "feature_maps.png")
    out["filters"], out["feature_maps"] = "filters.png", "feature_maps.png"

    pred = predict_all(model, test_x)
    cm = confusion_matrix(pred, test_y, len(names))
    plot_confusion(cm, names, run_dir / "confusion.png")
    out["accuracy"] = float(np.trace(cm) / cm.sum())

    layer = last_feature_map(model, test_x[:1])
    pick = torch.cat([torch.nonzero(test_y == c).flatten()[:1] for c in range(min(len(names), 8))])
    cams, cam_pred = grad_cam(model, test_x[pick], layer)
    plot_grad_cam(test_x[pick], cams, cam_pred.tolist(), test_y[pick].tolist(), names, run_dir / "gradcam.png")

    log(f"training an MLP with about as many parameters as the CNN ({sum(p.numel() for p in model.parameters()):,}) "
        "for the translation experiment")
    mlp = train_mlp(train_x, train_y, len(names), sum(p.numel() for p in model.parameters()), mlp_epochs)
    sub_x, sub_y = test_x[:2000], test_y[:2000]
    curves = {"CNN": shift_accuracy(model, sub_x, sub_y, shifts), "MLP": shift_accuracy(mlp, sub_x, sub_y, shifts)}
    plot_translation(shifts, curves, run_dir / "translation.png")
    out["translation"] = {k: [round(a, 4) for a in v] for k, v in curves.items()}
    out["shifts"] = list(shifts)
    (run_dir / "explain.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
