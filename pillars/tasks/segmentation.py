"""Segmentation: a U-Net labels every pixel of a brain MRI slice, beside the labels of the nearest training slice.

The data is one subject, Colin27 (pillars.data.mri), cut into axial slices. Held-out slabs of `slab`
slices, alternately test and validation, sit every `period` / 2 slices with `gap` slices on either side that
no split uses: a slice one millimetre from a test slice is nearly the same image with nearly the same
labels, and would leak it. The baseline copies, for every held-out slice, the labels of the nearest
training slice of the same volume: an atlas that knows where the slice is but looks at nothing in it. On
a user's PNG pairs, which have no order, it copies the training mask whose image is nearest in pixels.

Dice (Dice 1945; as a loss Milletari et al. 2016) of class c over a whole split, P_c the pixels predicted c
and G_c the pixels labelled c, counted over every slice of the split (not averaged per slice):

    Dice_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c|)

Each evaluation batch adds |P_c ∩ G_c|, |P_c| and |G_c| (the loop's additive sums), so the figure is the
whole split's. Mean Dice is the mean over the classes other than the background (label 0), which would
otherwise flatter every model with its easy majority of pixels. The loss is the pixels' cross-entropy plus
`dice_weight` times one minus the soft Dice of the batch, with the softmax probabilities p in place of P:

    L = CE + w (1 - mean_c (2 sum p_c g_c + 1) / (sum p_c + sum g_c + 1)),   c among the batch's classes

which keeps small classes (the insula is 1% of the labelled voxels) from being drowned by large ones.
Images are padded to sides that are multiples of 2^depth; padded pixels carry the label -1, which neither
the loss nor Dice reads.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import data
from pillars.config import ConfigError, note, write_bytes_atomic, write_text_atomic
from pillars.data.batches import TensorBatches
from pillars.data.mri import (LABEL_SETS, Case, axial_slices, grey_png, read_nifti, scaled, segmentation_pairs,
                              slab_roles)
from pillars.devices import resolve_device
from pillars.models import cnn
from pillars.tasks import Family, Job, LoadedRun, Task, check_choice, register, trained_from_inputs

IMAGE_SPLIT_SEED = 0   # the split of a user's PNG pairs: fixed, so that every run holds out the same images
PAD = -1               # the label of padding pixels: read by neither the loss nor Dice


@dataclass
class SegmentOptions:
    labels: str = "mask"         # mask: brain against the rest; lobes: the AAL atlas's 116 regions in its 8 lobes
    data: str = ""               # your folder of CASE_image.nii.gz + CASE_label.nii.gz, or CASE_image.png +
    #                              CASE_mask.png, pairs ("": the packaged Colin27)
    width: int = 8               # channels of the U-Net's first level; each level down doubles them
    depth: int = 4               # the U-Net's 2x2 max-pools; images are padded to multiples of 2^depth
    batch_norm: bool = True
    dropout: float = 0.0         # 2-D dropout before the U-Net's bottom level
    dice_weight: float = 1.0     # the loss: cross-entropy + dice_weight x (1 - soft Dice)
    flip: bool = False           # augmentation: mirror half the training slices left to right
    coords: bool = True          # two more input channels: each pixel's row and column (CoordConv)
    height: bool = True          # one more input channel: the slice's height, (slice - middle) / 100 (volumes only)
    slab: int = 6                # slices in each held-out slab of a volume (test and validation alike)
    gap: int = 4                 # slices on either side of a held-out slab that no split uses
    period: int = 60             # a test slab and a validation slab every `period` slices
    test_fraction: float = 0.2   # PNG pairs (no slices to cut slabs from): held out for the test, by a fixed seed
    valid_fraction: float = 0.1  # PNG pairs: held out for validation

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before any data is read: a known label set, slabs that fit in their period, a sane U-Net."""
        check_choice(cfg, "labels", LABEL_SETS)
        if cfg["data"] and cfg["labels"] != "mask":
            raise ConfigError(f"labels={cfg['labels']} chooses among the packaged Colin27 label sets; with --set "
                              "data=DIR the labels are your files' own: leave labels out")
        for key, low in (("width", 1), ("depth", 1), ("slab", 1), ("gap", 0), ("period", 2)):
            if cfg[key] < low:
                raise ConfigError(f"{key} must be at least {low}, not {cfg[key]}")
        if 2 * (cfg["slab"] + 2 * cfg["gap"]) > cfg["period"]:
            raise ConfigError(f"a period of {cfg['period']} slices cannot hold a test and a validation slab of "
                              f"{cfg['slab']} slices with {cfg['gap']} on either side of each (2 x (slab + 2 gap) = "
                              f"{2 * (cfg['slab'] + 2 * cfg['gap'])}): raise period or lower slab or gap")
        for key in ("test_fraction", "valid_fraction"):
            if not 0 < cfg[key] < 1:
                raise ConfigError(f"{key} must be between 0 and 1 (exclusive), not {cfg[key]}")


@dataclass
class SegmentationInputs:
    """What a trained U-Net expects and gives, saved with a run as inputs.json: the class names, the label
    value each class has in the files (the mask PNGs written by predict use them), and the multiple the
    image sides are padded to."""
    classes: list[str]
    values: list[int]
    multiple: int
    height: bool = False         # the slice's height in its volume is an input channel (`with_height`)


@dataclass
class SegmentationJob(Job):
    """A segmentation job, with what the baseline and explain need: where each slice came from."""
    nearest: dict = field(default_factory=dict)   # split -> index of each slice's nearest training slice
    train_labels: torch.Tensor | None = None       # (N, H, W): what the nearest-slice baseline copies
    where: dict = field(default_factory=dict)      # split -> [(case name, slice index)]


def foreground(inputs: SegmentationInputs) -> list[int]:
    """The classes that mean Dice averages: all but the background (label value 0)."""
    return [c for c, v in enumerate(inputs.values) if v != 0]


def dice_sums(pred: torch.Tensor, labels: torch.Tensor, classes: int) -> dict[str, torch.Tensor]:
    """|P_c ∩ G_c|, |P_c| and |G_c| of every class over the pixels that are not padding (additive)."""
    real = labels != PAD
    p, g = pred[real], labels[real]
    return {"inter": torch.bincount(g[p == g], minlength=classes).double(),
            "pred_n": torch.bincount(p, minlength=classes).double(),
            "true_n": torch.bincount(g, minlength=classes).double()}


def dice_summary(sums: dict, inputs: SegmentationInputs, prefix: str = "") -> dict[str, float]:
    """Per-class Dice ("dice_brain", ...) and mean Dice over the foreground classes that a split holds or a
    model predicts (a class with neither has no Dice), and the loss per pixel where the sums carry it."""
    inter, pred_n, true_n = (np.asarray(sums[k], dtype=np.float64) for k in ("inter", "pred_n", "true_n"))
    out = {"loss": sums["loss_sum"] / max(sums["pixels"], 1.0)} if "loss_sum" in sums else {}
    scores = []
    for c in foreground(inputs):
        if pred_n[c] + true_n[c] > 0:
            out[f"{prefix}dice_{inputs.classes[c].replace(' ', '_')}"] = 2 * inter[c] / (pred_n[c] + true_n[c])
            scores.append(out[f"{prefix}dice_{inputs.classes[c].replace(' ', '_')}"])
    out[f"{prefix}mean_dice"] = float(np.mean(scores)) if scores else 0.0
    return {k: float(v) for k, v in out.items()}


def soft_dice(logits: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """The batch's soft Dice, (2 sum p g + 1) / (sum p + sum g + 1) (module docstring), mean over those of
    `classes` that the batch holds: a class absent from a batch would only teach, batch after batch, never to
    predict it (the cross-entropy already punishes a class predicted where it is not)."""
    real = (labels != PAD).unsqueeze(1)
    p = logits.float().softmax(1) * real
    g = F.one_hot(labels.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2) * real
    inter, truth = (p * g).sum((0, 2, 3)), g.sum((0, 2, 3))
    dice = ((2 * inter + 1) / (p.sum((0, 2, 3)) + truth + 1))[classes]
    held = truth[classes] > 0
    return dice[held].mean() if held.any() else dice.new_tensor(1.0)


class WithCoordinates(nn.Module):
    """Feeds a network each pixel's row and column beside the image (CoordConv, Liu et al. 2018), in units of
    100 pixels from the image's centre. A convolution cannot tell where it is; an atlas's labels depend on
    where a pixel lies as much as on what it shows (the border of two lobes is often no visible line)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows = (torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2) / 100
        cols = (torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2) / 100
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).expand(len(x), -1, -1, -1)
        return self.net(torch.cat([x, grid.to(memory_format=torch.contiguous_format)], 1))


def network(cfg: dict, inputs: SegmentationInputs) -> nn.Module:
    unet = cnn.UNet(cnn.UNetConfig(in_channels=1 + inputs.height + 2 * cfg["coords"], num_classes=len(inputs.classes),
                                   width=cfg["width"], depth=cfg["depth"], batch_norm=cfg["batch_norm"],
                                   dropout=cfg["dropout"]))
    return WithCoordinates(unet) if cfg["coords"] else unet


# ----------------------------------------------------------------------------- data into tensors

def labelled_cases(cfg: dict) -> tuple[list[Case], list[str], list[int]]:
    """The cases (the packaged Colin27, or a user's pairs), the class names and each class's label value."""
    if not cfg["data"]:
        arrays = data.load("colin27")
        names = data.get("colin27").meta["label sets"][cfg["labels"]]
        case = Case("colin27", scaled(arrays["t1"]), arrays[cfg["labels"]].astype(np.int64), True)
        return [case], names, list(range(len(names)))
    cases = segmentation_pairs(cfg["data"])
    counts: dict[int, int] = {}
    for c in cases:
        for v, n in zip(*np.unique(c.labels, return_counts=True)):
            counts[int(v)] = counts.get(int(v), 0) + int(n)
    values = sorted(counts)
    if len(values) < 2:
        raise ConfigError(f"every label in {cfg['data']} is {values[0]}: segmentation needs at least two classes "
                          "(0 the background, and what to find)")
    rare = [v for v in values if counts[v] < 1e-3 * sum(counts.values())]
    if len(values) > 3 and len(rare) > len(values) / 2:   # 0 and 255 with the grey levels of their edges
        note(f"note: {len(rare)} of the {len(values)} label values in {cfg['data']} each cover less than 0.1% of "
             "the pixels: are the masks anti-aliased, resized or saved as JPEG? Each is trained as a class; "
             "threshold the masks to one value a class (0, 1, 2, ... or 0 and 255) if they are not classes")
    return cases, [str(v) for v in values], values


def split_slices(cases: list[Case], cfg: dict) -> dict[str, list[tuple[int, int]]]:
    """split -> (case, slice) pairs: slabs of each volume (`slab_roles`), and a fixed-seed draw of images."""
    out = {"train": [], "valid": [], "test": []}
    images = [i for i, c in enumerate(cases) if not c.volume]
    for i, case in enumerate(cases):
        if case.volume:
            for z, role in enumerate(slab_roles(len(case.image), cfg["slab"], cfg["gap"], cfg["period"])):
                if role in out:
                    out[role].append((i, z))
    if images:
        order = np.random.default_rng(IMAGE_SPLIT_SEED).permutation(images)
        n_test, n_valid = (max(1, round(cfg[k] * len(images))) for k in ("test_fraction", "valid_fraction"))
        if len(images) < n_test + n_valid + 1:
            raise ConfigError(f"{cfg['data']} holds {len(images)} PNG pairs: at least 3 are needed (one each to "
                              "train on, validate on and test on)")
        for k, i in enumerate(order):
            out["test" if k < n_test else "valid" if k < n_test + n_valid else "train"].append((int(i), 0))
    for role, picks in out.items():
        if not picks:
            raise ConfigError(f"the {role} split is empty: the volumes are too short for slabs of {cfg['slab']} "
                              f"slices every {cfg['period'] // 2} ({len(cases[0].image)} slices in the first); "
                              "lower period, slab or gap")
    return out


def padded_side(cases: list[Case], multiple: int) -> tuple[int, int]:
    """The largest image's height and width, rounded up to `multiple`."""
    h, w = (max(c.image.shape[k] for c in cases) for k in (1, 2))
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def pad_to(a: np.ndarray, side: tuple[int, int], fill) -> np.ndarray:
    """A (H, W) array centred in an array of `side`, filled with `fill` around it."""
    out = np.full(side, fill, dtype=a.dtype)
    top, left = (side[0] - a.shape[0]) // 2, (side[1] - a.shape[1]) // 2
    out[top:top + a.shape[0], left:left + a.shape[1]] = a
    return out


def with_height(x: np.ndarray, slices: list[int], counts: list[int]) -> np.ndarray:
    """Images (N, 1, H, W) with a second channel holding each slice's height in its volume of `counts`
    slices, (slice - middle) / 100: 0 for a single image. Atlas labels depend on the level of the slice."""
    h = np.array([(z - (n - 1) / 2) / 100 for z, n in zip(slices, counts)], dtype=np.float32)
    return np.concatenate([x, np.broadcast_to(h[:, None, None, None], x.shape)], 1)


def slice_tensors(cases: list[Case], picks: list[tuple[int, int]], values: list[int], side: tuple[int, int],
                  device: torch.device, height: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) in [0, 1] (and their height, `with_height`) and class indices (N, H, W), padded to
    `side` (labels with PAD)."""
    x = np.stack([pad_to(cases[i].image[z], side, np.float32(0)) for i, z in picks])[:, None]
    if height:
        x = with_height(x, [z for _, z in picks], [len(cases[i].image) for i, _ in picks])
    y = np.stack([pad_to(np.searchsorted(values, cases[i].labels[z]), side, PAD) for i, z in picks])
    return torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)


def nearest_training(cases: list[Case], picks: dict[str, list[tuple[int, int]]], train_x: torch.Tensor,
                     x: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """split -> for each slice, the index of the nearest training slice: of the same volume by slice
    distance, or (an image, or a volume without training slices) the nearest training image in pixels."""
    out = {}
    for split in ("valid", "test"):
        found = []
        for k, (case, z) in enumerate(picks[split]):
            same = [(abs(tz - z), t) for t, (tc, tz) in enumerate(picks["train"]) if tc == case]
            if cases[case].volume and same:
                found.append(min(same)[1])
            else:
                found.append(int(((train_x - x[split][k:k + 1]) ** 2).flatten(1).sum(1).argmin()))
        out[split] = np.array(found, dtype=np.int64)
    return out


def build_brain_segment(cfg: dict, device: torch.device) -> SegmentationJob:
    """The slices of the cases split into slabs (or drawn images), padded, on `device`; the U-Net, its loss
    and Dice sums; the nearest-training-slice baseline on the same test slices."""
    cases, names, values = labelled_cases(cfg)
    picks = split_slices(cases, cfg)
    height = cfg["height"] and any(c.volume for c in cases)   # a single image has no level to give
    inputs = SegmentationInputs(names, values, 2 ** cfg["depth"], height)
    side = padded_side(cases, inputs.multiple)
    tensors = {split: slice_tensors(cases, picks[split], values, side, device, height) for split in picks}
    nearest = nearest_training(cases, picks, tensors["train"][0], {s: tensors[s][0] for s in ("valid", "test")})
    fg, classes = foreground(inputs), len(names)

    def loss(model, batch):
        x, y = batch
        if cfg["flip"]:
            mirror = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
            y = torch.where(mirror[:, None, None], y.flip(-1), y)
        logits = model(x).float()
        ce = F.cross_entropy(logits, y, ignore_index=PAD)
        return ce + cfg["dice_weight"] * (1 - soft_dice(logits, y, fg)) if cfg["dice_weight"] else ce

    def eval_sums(model, batch):
        x, y = batch
        logits = model(x).float()
        return {**dice_sums(logits.argmax(1), y, classes),
                "loss_sum": F.cross_entropy(logits, y, ignore_index=PAD, reduction="sum"),
                "pixels": (y != PAD).sum().double()}

    train_y = tensors["train"][1]

    def baselines():
        test_y = tensors["test"][1]
        copied = train_y[torch.from_numpy(nearest["test"]).to(train_y.device)]
        return dice_summary({k: v.cpu().numpy() for k, v in dice_sums(copied, test_y, classes).items()},
                            inputs, prefix="nearest_slice_")

    return SegmentationJob(
        model=network(cfg, inputs), train=TensorBatches(tensors["train"], cfg["batch_size"], cfg["seed"]),
        valid=tensors["valid"], test=tensors["test"], loss=loss, eval_sums=eval_sums,
        summary=lambda sums: dice_summary(sums, inputs), conv=True, inputs=inputs, baselines=baselines,
        nearest=nearest, train_labels=train_y,
        where={s: [(cases[i].name, z) for i, z in picks[s]] for s in picks})


# ----------------------------------------------------------------------------- the family

class Segmenter(Family):
    """Segmentation networks: mean Dice beside the nearest training slice's labels; explain draws the
    predictions over held-out slices against the truth; predict writes a user's slices' masks."""

    what = "segmentation network"
    baseline_names = {"nearest_slice_mean_dice": ("nearest training slice's labels", "mean Dice {:.3f}")}
    report_figures = ("curves.png", "segmentation.png")

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        per_class = {k[5:].replace("_", " "): v for k, v in f.items() if k.startswith("dice_")}
        if len(per_class) < 2:
            return f"mean Dice {f['mean_dice']:.3f}"
        lowest = min(per_class, key=per_class.get)
        return f"mean Dice {f['mean_dice']:.3f} ({len(per_class)} classes; lowest {lowest} {per_class[lowest]:.3f})"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        """segmentation.png: held-out test slices (the middle of each slab, at most 4), the truth, the U-Net's
        labels and the nearest training slice's, each over the image; the test figures of both."""
        job = run.job
        x, y = job.test
        picks = middle_of_slabs([z for _, z in job.where["test"]], 4)
        with torch.no_grad():
            pred = job.model.eval()(x[picks]).argmax(1)
        copied = job.train_labels[torch.from_numpy(job.nearest["test"][picks]).to(x.device)]
        path = run.run_dir / "segmentation.png"
        names = [f"{case} slice {z}" for case, z in (job.where["test"][i] for i in picks)]
        plot_segmentation(x[picks, 0].cpu().numpy(), y[picks].cpu().numpy(), pred.cpu().numpy(),
                          copied.cpu().numpy(), names, job.inputs, path)
        log(f"wrote {path}: {len(picks)} held-out test slices; truth, U-Net and the nearest training slice's labels")
        out = {"segmentation": path.name, "slices": names,
               "unet": slice_dice(pred, y[picks], job.inputs),
               "nearest_slice": slice_dice(copied, y[picks], job.inputs)}
        for who in ("unet", "nearest_slice"):
            log(f"  {who:<14} mean Dice on these slices " + " ".join(f"{d:.3f}" for d in out[who]))
        write_text_atomic(run.run_dir / "explain.json", json.dumps(out, indent=2) + "\n")
        return out

    def predict(self, run_dir: Path, cfg: dict, paths: list[str], top_k: int | None, invert: str, device: str,
                log: Callable[[str], None]) -> None:
        """Each file's labels, written beside the run: a PNG slice -> predictions/NAME_mask.png (label values
        as grey levels), a NIfTI volume -> predictions/NAME_label.nii.gz (on the RAS-turned grid)."""
        if invert != "auto" or top_k is not None:
            flag = f"--invert {invert}" if invert != "auto" else f"--top-k {top_k}"
            raise ConfigError(f"{flag} is for classifiers and detectors; {run_dir} is a {self.what}, which labels "
                              f"every voxel: leave {flag.split()[0]} out")
        device = resolve_device(device)
        model, inputs = trained_from_inputs(Path(run_dir), cfg, device, lambda d: SegmentationInputs(**d), network,
                                            build_brain_segment)
        out = Path(run_dir) / "predictions"
        out.mkdir(exist_ok=True)
        for path in map(Path, paths):
            log(f"{path} -> {write_prediction(model, inputs, path, out, device)}")


def middle_of_slabs(slices: list[int], most: int) -> list[int]:
    """Indices of the middle slice of each run of consecutive slice numbers (a slab), at most `most` of them
    spread over the runs (every slice is its own run for images)."""
    runs, start = [], 0
    for i in range(1, len(slices) + 1):
        if i == len(slices) or slices[i] != slices[i - 1] + 1:
            runs.append((start + i - 1) // 2)
            start = i
    keep = np.linspace(0, len(runs) - 1, min(most, len(runs))).round().astype(int)
    return [runs[k] for k in sorted(set(keep))]


def slice_dice(pred: torch.Tensor, labels: torch.Tensor, inputs: SegmentationInputs) -> list[float]:
    """The mean Dice of each slice on its own."""
    return [round(dice_summary({k: v.cpu().numpy() for k, v in dice_sums(p, y, len(inputs.classes)).items()},
                               inputs)["mean_dice"], 4) for p, y in zip(pred, labels)]


def plot_segmentation(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, copied: np.ndarray,
                      names: list[str], inputs: SegmentationInputs, path: Path) -> None:
    """One row a slice: the image, then the truth, the U-Net's and the nearest slice's labels over it (each
    class its colour, the background clear), each titled with its mean Dice against the truth."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from pillars.plots import pyplot
    plt = pyplot()
    n = len(inputs.classes)   # tab10 without its grey, which would vanish over the image
    colours = plt.get_cmap("tab10")([0, 0, 1, 2, 3, 4, 5, 6, 8, 9][:n]) if n <= 10 else plt.get_cmap("tab20")(
        np.arange(n) % 20)
    colours[0, 3] = 0.0   # the background is clear
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(len(images), 4, figsize=(10, 2.9 * len(images)), squeeze=False)
    for row, (img, name) in enumerate(zip(images, names)):
        for col, (title, labels) in enumerate((("image", None), ("truth", truth[row]), ("U-Net", pred[row]),
                                               ("nearest training slice", copied[row]))):
            ax = axes[row][col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            if labels is not None:
                shown = np.ma.masked_where((labels <= 0) | (truth[row] == PAD), labels)
                ax.imshow(shown, cmap=cmap, vmin=0, vmax=len(inputs.classes) - 1, alpha=0.55, interpolation="nearest")
                if col > 1:
                    dice = slice_dice(torch.from_numpy(labels[None]), torch.from_numpy(truth[row][None]), inputs)[0]
                    title += f"\nmean Dice {dice:.3f}"
            ax.set_title(title if col else f"{name}", fontsize=8)
            ax.axis("off")
    handles = [Patch(color=colours[c], label=inputs.classes[c]) for c in foreground(inputs)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def segment(model: nn.Module, inputs: SegmentationInputs, slices: np.ndarray, device: torch.device) -> np.ndarray:
    """The label values (Z, H, W) of slices (Z, H, W) scaled to [0, 1], padded for the U-Net and cropped back."""
    side = tuple(-(-s // inputs.multiple) * inputs.multiple for s in slices.shape[1:])
    top, left = (side[0] - slices.shape[1]) // 2, (side[1] - slices.shape[2]) // 2
    out = []
    for z in range(len(slices)):
        x = pad_to(slices[z], side, np.float32(0))[None, None]
        x = torch.from_numpy(with_height(x, [z], [len(slices)]) if inputs.height else x).to(device)
        pred = model(x).argmax(1)[0].cpu().numpy()
        out.append(pred[top:top + slices.shape[1], left:left + slices.shape[2]])
    return np.asarray(inputs.values)[np.stack(out)]


def write_prediction(model: nn.Module, inputs: SegmentationInputs, path: Path, out: Path,
                     device: torch.device) -> Path:
    """A PNG slice's or a NIfTI volume's predicted labels, written into `out`; returns the file written."""
    from PIL import Image

    from pillars.plots import save_png
    if path.name.endswith(".png"):
        labels = segment(model, inputs, scaled(grey_png(path, "image"))[None], device)[0]
        if labels.max() > 255:
            raise ConfigError(f"{path}: label values above 255 do not fit a PNG mask; give a NIfTI file")
        dst = out / f"{path.name[:-4]}_mask.png"
        save_png(Image.fromarray(labels.astype(np.uint8)), dst)
        return dst
    import nibabel as nib
    volume = read_nifti(path)
    labels = segment(model, inputs, scaled(axial_slices(volume, path)), device)   # (Z, Y, X), Y flipped
    ras = labels[:, ::-1, :].transpose(2, 1, 0).reshape(volume.shape).astype(np.int16)
    affine = nib.as_closest_canonical(nib.load(str(path))).affine
    dst = out / (path.name.split(".nii")[0] + "_label.nii.gz")
    write_bytes_atomic(dst, gzip.compress(nib.Nifti1Image(ras, affine).to_bytes(), mtime=0))
    return dst


register(Task(
    name="brain-segment",
    description="a U-Net labels every pixel of axial MRI slices of the Colin27 brain: the brain mask "
                "(--set labels=mask) or the AAL atlas's lobes (--set labels=lobes), tested on held-out slabs "
                "beside the nearest training slice's labels (--set data=DIR: your NIfTI or PNG pairs)",
    dataset="colin27 (or your NIfTI / PNG image-label pairs: --set data=DIR)",
    model="U-Net (4 levels, 8 to 128 channels, BatchNorm), fed the pixels' coordinates and the slice's height too",
    objective="cross-entropy + soft Dice",
    metric="mean_dice", options=SegmentOptions, build=build_brain_segment, family=Segmenter(),
    defaults={"epochs": 60.0, "batch_size": 4, "lr": 4e-3, "weight_decay": 1e-4, "warmup_steps": 60,
              "eval_batch_size": 16, "log_every": 20},
))
