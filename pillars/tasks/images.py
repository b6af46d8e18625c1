"""Image classification: CNNs on registered image datasets and on a user's folder; transfer learning.

Every task holds out a validation split from its training images: a stratified `valid_fraction` of each
class, drawn with a fixed seed (not the run's), so that every run of a dataset shares one split. The
normalisation statistics come from the rest, the training part; the test set is the dataset's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import data, explain, metrics
from pillars.config import ConfigError, check_multiple
from pillars.data import transforms
from pillars.data.batches import TensorBatches
from pillars.data.folder import as_fashion_mnist, load_image_folder, open_image, to_array
from pillars.data.vision import stratified_split
from pillars.data.weights import efficientnet_lite0_imagenet
from pillars.devices import resolve_device
from pillars.models import cnn, transformer
from pillars.tasks import TOP_CLASSES, Family, Job, LoadedRun, Task, register, trained_from_inputs

VALID_SEED = 0   # the validation split's seed: fixed, so every run of a dataset holds out the same images
IMAGE_SIDES = {"fashion-mnist": 28, "mnist-5k": 28, "digits": 8}   # of a registered dataset's images, in pixels


@dataclass
class ImageInputs:
    """What a model expects of an image: channels, side, normalisation, class names."""
    channels: int
    size: int
    mean: list[float]
    std: list[float]
    classes: list[str]
    light_on_dark: bool = False   # the training images show light objects on a black background


@dataclass
class ImageOptions:
    label_smoothing: float = 0.0
    train_samples: int = 0       # use only the first N training images (0: all of them)
    crop_pad: int = 0            # augmentation: random crop after padding by this many pixels (0: off)
    flip: bool = False           # augmentation: random horizontal flip
    erase: float = 0.0           # augmentation: random erasing (Zhong et al. 2017) with this probability
    tta_flip: bool = False       # test-time augmentation: average the logits of the image and its mirror
    valid_fraction: float = 0.1  # of every class's training images, held out for validation (a fixed split)


@dataclass
class ConvNetOptions(ImageOptions):
    width: int = 32              # channels of the first stage; each later stage doubles them
    stages: int = 2
    hidden: int = 128
    batch_norm: bool = True
    dropout: float = 0.25

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before any data is read: each stage halves the image (a 2x2 max-pool), never below one pixel."""
        check_halvings(cfg, task, cfg["stages"], "a 2x2 max-pool per stage", 0)


@dataclass
class ResNetOptions(ImageOptions):
    width: int = 32              # channels of the first stage; each later stage doubles them
    stages: int = 3
    blocks: int = 2              # basic blocks per stage
    dropout: float = 0.0
    stem_pool: bool = False      # 2x2 max-pool after the stem (every stage on a quarter of the pixels)

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before any data is read: every stage after the first halves the image (as does stem_pool), never
        below one pixel."""
        halvings = cfg["stages"] - 1 + cfg["stem_pool"]
        why = "every stage after the first" + (", and stem_pool" if cfg["stem_pool"] else "")
        check_halvings(cfg, task, halvings, why, cfg["stages"] - halvings)


def image_side(cfg: dict, task: Task) -> int | None:
    """The side of the images a task's model reads, known before any data is read (None: not known)."""
    return cfg.get("image_size") or IMAGE_SIDES.get(task.dataset)


def check_halvings(cfg: dict, task: Task, halvings: int, why: str, stages_beyond: int) -> None:
    """A ConfigError unless an image halved `halvings` times keeps at least one pixel; `stages_beyond`: the
    stages that the halvings leave out (most stages = the halvings that fit + this)."""
    side = image_side(cfg, task)
    if side is None or 2 ** halvings <= side:
        return
    most = max(side.bit_length() - 1 + stages_beyond, 1)
    more = " or a larger --set image_size=N" if "image_size" in cfg else ""
    raise ConfigError(f"stages={cfg['stages']} halves the {side}x{side} images {halvings} times ({why}), to less "
                      f"than one pixel: at most {most} stages fit {side}-pixel images; --set stages={most}{more}")


def scaled_pixels(pixels) -> torch.Tensor:
    """uint8 images, (N, H, W) or (N, H, W, C), as float (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(pixels).float().div_(255)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def normalised(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in (mean, std))
    return (x - mean).div_(std)


def held_out(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) indices: a stratified `fraction` of every class held out, the same for every run."""
    if not 0 < fraction < 1:
        raise ConfigError(f"valid_fraction must be between 0 and 1 (exclusive), not {fraction}")
    train, valid = stratified_split(labels, fraction, VALID_SEED)
    if len(valid) == 0 or len(train) == 0:
        raise ConfigError(f"valid_fraction={fraction} of {len(labels)} training images leaves "
                          f"{len(train)} to train on and {len(valid)} to validate on; change it or add images")
    return train, valid


def image_tensors(arrays: dict, device: torch.device, valid_fraction: float, train_samples: int = 0,
                  mean=None, std=None):
    """(train_x, train_y), (valid_x, valid_y), (test_x, test_y), mean, std: float (N, C, H, W) images
    normalised per channel (with the training part's statistics unless given), int64 labels, on `device`.
    The validation images are held out of the training set (`held_out`); `train_samples` keeps the first
    N of the rest."""
    tr, va = held_out(arrays["train_y"], valid_fraction)
    train_x = scaled_pixels(arrays["train_x"][tr])
    if mean is None:
        mean, std = train_x.mean((0, 2, 3)).tolist(), train_x.std((0, 2, 3)).tolist()

    def prepare(x, y):
        return normalised(x, mean, std).to(device), torch.from_numpy(y).long().to(device)

    n = train_samples or len(tr)
    train = prepare(train_x[:n], arrays["train_y"][tr][:n])
    valid = prepare(scaled_pixels(arrays["train_x"][va]), arrays["train_y"][va])
    return train, valid, prepare(scaled_pixels(arrays["test_x"]), arrays["test_y"]), mean, std


def image_job(cfg: dict, model: nn.Module, train: tuple, valid: tuple, test: tuple, inputs: ImageInputs,
              conv: bool = True, extend: Callable[[tuple], tuple] | None = None) -> Job:
    """A classification job: cross-entropy with optional label smoothing and on-device augmentation.
    `extend(batch) -> batch` adds examples to each training batch before the augmentation (a GAN's images)."""
    def loss(model, batch):
        x, y = batch if extend is None else extend(batch)
        if cfg["crop_pad"]:
            x = transforms.random_crop(x, cfg["crop_pad"])
        if cfg["flip"]:
            x = transforms.random_flip(x)
        if cfg["erase"]:
            x = transforms.random_erase(x, cfg["erase"])
        return F.cross_entropy(model(x), y, label_smoothing=cfg["label_smoothing"])

    def eval_sums(model, batch):
        x, y = batch
        logits = model(x)
        if cfg["tta_flip"]:
            logits = (logits.float() + model(x.flip(-1)).float()) / 2
        return metrics.classification_sums(logits, y)

    return Job(model=model, train=TensorBatches(train, cfg["batch_size"], cfg["seed"]), valid=valid, test=test,
               loss=loss, eval_sums=eval_sums, summary=metrics.classification_summary, conv=conv, inputs=inputs,
               baselines=lambda: image_baselines(train, test))


PIXEL_BASELINE_FEATURES = 4096   # the logistic regression on the pixels up to 64x64 grey or 36x36 colour


def image_baselines(train: tuple, test: tuple) -> dict[str, float]:
    """The majority class and, for images of at most PIXEL_BASELINE_FEATURES values (larger ones would take
    minutes) of at least two classes, a logistic regression on the pixels: fitted on the run's own training
    images (never the validation ones), scored on the same test images as the network, computed once per split
    and cached."""
    from pillars.baselines import cached_baselines, majority_accuracy, pixel_logistic_regression
    x, y, test_x, test_y = (t.cpu().numpy() for t in (*train, *test))
    out = {"majority_accuracy": majority_accuracy(y, test_y)}
    if x[0].size <= PIXEL_BASELINE_FEATURES and len(np.unique(y)) > 1:   # one class: nothing to fit
        iterations = 200   # part of the cache's key, with the images
        out.update(cached_baselines("pixel-logreg", lambda: {"logistic_accuracy": float(np.mean(
            pixel_logistic_regression(x.astype(np.float32), y, test_x.astype(np.float32), iterations) == test_y))},
            x, y, test_x, test_y, iterations))
    return out


# ----------------------------------------------------------------------------- the family

class ImageClassifier(Family):
    """Image classifiers: the explain figures (filters, feature maps, confusion, Grad-CAM, translation),
    predict on a user's photos, accuracy as the headline. `model(cfg, inputs)` builds the network alone
    from the configuration and a run's inputs.json (no data); `build` is the task's, for runs that have
    no inputs.json; `classes` (0: it depends on the data) gives the chance level."""

    what = "image classifier"
    baseline_names = {"logistic_accuracy": ("logistic regression on the pixels", "{:.2%}"),
                      "majority_accuracy": ("majority class", "{:.2%}")}
    chance_keys = frozenset({"majority_accuracy"})
    report_figures = ("curves.png", "filters.png", "feature_maps.png", "translation.png", "confusion.png",
                      "gradcam.png")

    def __init__(self, model: Callable[[dict, ImageInputs], nn.Module], build: Callable[..., Job],
                 classes: int = 0):
        self.model, self.build, self.classes = model, build, classes

    def headline(self, summary: dict) -> str:
        return f"{100 * summary['final']['accuracy']:.2f}% accuracy"

    def chance(self, summary: dict) -> str:
        text = self.baselines_text(summary, "chance")
        if not text and self.classes:
            text = f"{1 / self.classes:.0%} ({self.classes} classes)"
        return text

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        # light (a short tour): the confusion of 2,000 test images, shifts of 0, 4 and 8 pixels of 1,000, and
        # a one-epoch MLP
        result = explain.explain_image_classifier(run.run_dir, run.job, log=log,
                                                  shifts=range(0, 9, 4) if light else range(0, 9),
                                                  shift_images=1000 if light else 2000,
                                                  confusion_images=2000 if light else 0,
                                                  mlp_epochs=1 if light else 3, precision=run.cfg["precision"])
        for key in ("filters", "feature_maps", "attention_maps"):
            if key in result:
                log(f"wrote {run.run_dir / result[key]}")
        n = result["confusion_images"]
        log(f"wrote {run.run_dir / 'confusion.png'} (accuracy {result['accuracy']:.2%} on "
            + (f"the first {n:,} test images)" if n < len(run.job.test[0]) else "the test set)"))
        log(f"wrote {run.run_dir / 'gradcam.png'}")
        log(f"wrote {run.run_dir / 'translation.png'}: accuracy at shifts {result['shifts']} px")
        for name, accs in result["translation"].items():
            log(f"  {name:<4} " + " ".join(f"{a:.3f}" for a in accs))
        return result

    def predict(self, run_dir: Path, cfg: dict, paths: list[str], top_k: int | None, invert: str, device: str,
                log: Callable[[str], None]) -> None:
        """The `top_k` (default TOP_CLASSES) classes of each image file, with their probabilities."""
        device = resolve_device(device)
        model, inputs = self.trained(Path(run_dir), cfg, device)
        for path in paths:
            probs, inverted = classify(model, inputs, Path(path), invert, device)
            top = probs.topk(min(top_k or TOP_CLASSES, len(probs)))
            log(f"{path}" + ("  (inverted: light background)" if inverted else ""))
            for p, i in zip(top.values.tolist(), top.indices.tolist()):
                log(f"  {inputs.classes[i]:<16} {p:6.1%}")

    def probabilities(self, run: LoadedRun, source, invert: str = "auto") -> torch.Tensor:
        """The class probabilities of one image (a file, a Pillow image or uint8 pixels; see `classify`), in
        the order of the run's classes: what `predict` shows, for the Python API."""
        return classify(run.job.model.eval(), run.job.inputs, source, invert, run.device)[0]

    def graph(self, run: LoadedRun):
        """The classifier as exported: normalised images (batch, C, H, W) -> logits (batch, classes); the
        example input is the first test images."""
        from pillars.export import Graph
        return Graph(run.job.model, {"image": run.job.test[0][:2].float().contiguous()}, {"image": {0: "batch"}},
                     ["logits"])

    def trained(self, run_dir: Path, cfg: dict, device: torch.device) -> tuple[nn.Module, ImageInputs]:
        return trained_from_inputs(run_dir, cfg, device, lambda d: ImageInputs(**d), self.model, self.build)


@torch.no_grad()
def classify(model: nn.Module, inputs: ImageInputs, image, invert: str,
             device: torch.device) -> tuple[torch.Tensor, bool]:
    """The class probabilities of one image, and whether its grey levels were inverted. `image` is a file, a
    Pillow image, or uint8 pixels (H, W) or (H, W, 3). Pixels of the model's side (`inputs.size`) are read as
    the training images were, as they are (inverted only with invert "yes"); a file, a Pillow image or other
    pixels are a photo. Light objects on black (Fashion-MNIST, MNIST): a photo is converted as those images
    were made."""
    from PIL import Image
    if isinstance(image, (str, Path)):
        image = open_image(Path(image))
    elif not isinstance(image, Image.Image):
        pixels = np.asarray(image)
        if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] != 3):
            raise ConfigError(f"an image given as pixels must be uint8, (H, W) grey or (H, W, 3) colour, not "
                              f"{pixels.dtype} {pixels.shape}: for floats in [0, 1], pass (x * 255).round()"
                              ".astype(numpy.uint8)")
        if pixels.shape[:2] == (inputs.size, inputs.size):
            inverted = invert == "yes"
            return classify_pixels(model, inputs, 255 - pixels if inverted else pixels, device), inverted
        image = Image.fromarray(pixels).convert("RGB")
    if inputs.light_on_dark:
        pixels, inverted = as_fashion_mnist(image, inputs.size, invert)
    else:
        pixels, inverted = to_array(image, inputs.size, inputs.channels), invert == "yes"
        if inverted:
            pixels = 255 - pixels
    return classify_pixels(model, inputs, pixels, device), inverted


def classify_pixels(model: nn.Module, inputs: ImageInputs, pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """The class probabilities of uint8 pixels of the model's side, grey (H, W) or colour (H, W, 3), given
    the model's channels (grey repeated; colour to grey as Pillow converts it) and normalised as the
    training images were."""
    from PIL import Image
    if inputs.channels == 3 and pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, -1)
    elif inputs.channels == 1 and pixels.ndim == 3:
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))
    x = normalised(scaled_pixels(pixels[None]), inputs.mean, inputs.std).to(device)
    return model(x).float().softmax(-1)[0].cpu()


def from_inputs(make_model: Callable[[dict, int, int, int], nn.Module]):
    """`make_model(cfg, channels, size, classes)` as a builder from a run's ImageInputs."""
    return lambda cfg, inputs: make_model(cfg, inputs.channels, inputs.size, len(inputs.classes))


# ----------------------------------------------------------------------------- registered datasets

def registered_images(dataset: str, make_model: Callable[[dict, int, int, int], nn.Module],
                      conv: bool = True) -> dict:
    """The `build` and `family` of a classifier of a registered image dataset (Task's keywords);
    `make_model(cfg, channels, size, classes)`."""
    classes = data.get(dataset).meta["classes"]

    def build(cfg: dict, device: torch.device) -> Job:
        train, valid, test, mean, std = image_tensors(data.load(dataset), device, cfg["valid_fraction"],
                                                      cfg["train_samples"])
        channels, size = train[0].shape[1], train[0].shape[-1]
        inputs = ImageInputs(channels, size, mean, std, classes, light_on_dark=True)
        return image_job(cfg, make_model(cfg, channels, size, len(classes)), train, valid, test, inputs, conv)
    return {"build": build, "family": ImageClassifier(from_inputs(make_model), build, len(classes))}


def convnet(cfg, channels, size, classes):
    return cnn.ConvNet(cnn.ConvNetConfig(
        in_channels=channels, num_classes=classes, image_size=size,
        widths=tuple(cfg["width"] * 2 ** i for i in range(cfg["stages"])),
        hidden=cfg["hidden"], batch_norm=cfg["batch_norm"], dropout=cfg["dropout"]))


def resnet(cfg, channels, size, classes):
    return cnn.ResNet(cnn.ResNetConfig(
        in_channels=channels, num_classes=classes, widths=tuple(cfg["width"] * 2 ** i for i in range(cfg["stages"])),
        blocks=cfg["blocks"], dropout=cfg["dropout"], stem_pool=cfg["stem_pool"]))


@dataclass
class ViTOptions(ImageOptions):
    patch: int = 7               # 28 / 7: 4 x 4 = 16 patch tokens and [CLS]
    width: int = 128
    heads: int = 4
    layers: int = 6
    dropout: float = 0.0

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before any data is read: heads that divide the width, patches that tile the image."""
        check_multiple(cfg, "width", "heads", "each head reads width / heads channels")
        side = image_side(cfg, task)
        if side and side % cfg["patch"]:
            divisors = ", ".join(str(d) for d in range(1, side + 1) if side % d == 0)
            raise ConfigError(f"patch {cfg['patch']} does not cut the {side}x{side} images into whole patches: "
                              f"--set patch=N with N a divisor of {side} ({divisors})")


def vit(cfg, channels, size, classes):
    return transformer.ViT(transformer.ViTConfig(
        image_size=size, patch=cfg["patch"], in_channels=channels, num_classes=classes, width=cfg["width"],
        heads=cfg["heads"], layers=cfg["layers"], dropout=cfg["dropout"]))


def lenet(cfg, channels, size, classes):
    return cnn.LeNet5(cnn.LeNetConfig(in_channels=channels, num_classes=classes, image_size=size))


register(Task(
    name="fashion-cnn",
    description="a small VGG-style CNN on Fashion-MNIST (the foundation's first real task)",
    dataset="fashion-mnist", model="ConvNet (2 stages, 32/64 channels, BatchNorm)",
    objective="cross-entropy", metric="accuracy", options=ConvNetOptions,
    **registered_images("fashion-mnist", convnet),
    defaults={"epochs": 4.0, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-4, "warmup_steps": 100},
))

register(Task(
    name="fashion-resnet",
    description="a ResNet for small images on Fashion-MNIST, with crop and flip augmentation on the device",
    dataset="fashion-mnist", model="ResNet (3 stages x 2 basic blocks, 32/64/128 channels)",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ResNetOptions,
    **registered_images("fashion-mnist", resnet),
    defaults={"epochs": 20.0, "batch_size": 256, "lr": 4e-3, "weight_decay": 5e-2, "warmup_steps": 200,
              "precision": "auto", "crop_pad": 2, "flip": True, "label_smoothing": 0.1},
))

register(Task(
    name="fashion-vit",
    description="a Vision Transformer on Fashion-MNIST: 7x7 patches as tokens, crop and flip augmentation",
    dataset="fashion-mnist", model="ViT (6 layers, 128 wide, 4 heads, 16 patches + [CLS])",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ViTOptions,
    **registered_images("fashion-mnist", vit, conv=False),
    defaults={"epochs": 12.0, "batch_size": 256, "lr": 2e-3, "weight_decay": 5e-2, "warmup_steps": 300,
              "precision": "auto", "crop_pad": 2, "flip": True, "label_smoothing": 0.1, "betas": "0.9,0.98"},
))

register(Task(
    name="mnist-5k-cnn",
    description="LeNet-5, the 1998 baseline, on the 5,000-digit MNIST subset",
    dataset="mnist-5k", model="LeNet-5", objective="cross-entropy", metric="accuracy", options=ImageOptions,
    **registered_images("mnist-5k", lenet),
    defaults={"epochs": 30.0, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50},
))

register(Task(
    name="digits-cnn",
    description="a small CNN on scikit-learn's 8x8 digits",
    dataset="digits", model="ConvNet (2 stages, 16/32 channels)", objective="cross-entropy", metric="accuracy",
    options=ConvNetOptions, **registered_images("digits", convnet),
    defaults={"epochs": 40.0, "batch_size": 64, "lr": 3e-3, "warmup_steps": 20, "width": 16, "hidden": 64},
))


@dataclass
class ImageFolderOptions(ResNetOptions):
    data: str = ""               # the folder: class sub-folders, or train/ and test/ holding them
    image_size: int = 64         # images are centre-cropped to a square and resized to this side
    channels: int = 0            # 1 (grey) or 3 (colour); 0: 1 when every image is grey
    test_fraction: float = 0.2   # held out for the test when there are no train/ and test/ folders

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        super().check(cfg, task)
        if cfg["channels"] not in (0, 1, 3):
            raise ConfigError(f"channels must be 1 (grey), 3 (colour) or 0 (1 when every image is grey), "
                              f"not {cfg['channels']}")


def build_image_folder(cfg: dict, device: torch.device) -> Job:
    """Train on DIR/train and test on DIR/test, or hold a stratified `test_fraction` of DIR out for the
    test; either way the validation images are a stratified `valid_fraction` of the training images."""
    if not cfg["data"]:
        raise ConfigError("image-folder trains on your own images: give the folder with --set data=DIR "
                          "(DIR/CLASS/*.jpg, or DIR/train/CLASS/... and DIR/test/CLASS/...)")
    if not 0 < cfg["test_fraction"] < 1:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), not {cfg['test_fraction']}")
    arrays, classes = load_image_folder(cfg["data"], cfg["image_size"], cfg["channels"], cfg["test_fraction"])
    train, valid, test, mean, std = image_tensors(arrays, device, cfg["valid_fraction"], cfg["train_samples"])
    channels = train[0].shape[1]
    inputs = ImageInputs(channels, cfg["image_size"], mean, std, classes)
    return image_job(cfg, resnet(cfg, channels, cfg["image_size"], len(classes)), train, valid, test, inputs)


register(Task(
    name="image-folder",
    description="a ResNet on your own folder of class sub-folders (--set data=DIR)",
    dataset="your folder (--set data=DIR)", model="ResNet (3 stages x 2 basic blocks)",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ImageFolderOptions,
    build=build_image_folder, family=ImageClassifier(from_inputs(resnet), build_image_folder),
    defaults={"epochs": 30.0, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-2, "warmup_steps": 50,
              "crop_pad": 4, "flip": True, "label_smoothing": 0.1, "eval_batch_size": 200},
))


# ----------------------------------------------------------------------------- transfer learning

class Resized(nn.Module):
    """Feeds small grey images to a network trained on large colour ones: bilinear upsampling to `size`
    and the grey channel repeated as R, G and B."""

    def __init__(self, net: nn.Module, size: int, channels: int = 3):
        super().__init__()
        self.net, self.size, self.channels = net, size, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x.expand(-1, self.channels, -1, -1))


@dataclass
class TransferOptions(ImageOptions):
    pretrained: bool = True      # start from the ImageNet weights (false: the same network from scratch)
    labels_per_class: int = 10   # labelled training images per class, drawn with the seed
    image_size: int = 64         # side the 28x28 images are upsampled to
    dropout: float = 0.2
    bn_momentum: float = 0.1     # BatchNorm running statistics follow the new domain within the short run


def few_labels(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` examples of every class, drawn with `seed`."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y.cpu() == c).flatten()
        if len(idx) < per_class:
            raise ConfigError(f"labels_per_class={per_class}, but class {c} has only {len(idx)} training images")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).to(y.device)


def transfer_net(cfg: dict, classes: int, pretrained: bool = False) -> nn.Module:
    """EfficientNet-Lite0 (from the ImageNet weights when `pretrained`) with a new `classes`-way head, fed
    the upsampled grey images."""
    net = cnn.EfficientNetLite(cnn.EfficientNetLiteConfig(dropout=cfg["dropout"], bn_momentum=cfg["bn_momentum"]))
    if pretrained:
        net.load_state_dict(cnn.efficientnet_from_reference(efficientnet_lite0_imagenet()))
    net.reset_classifier(classes)
    return Resized(net, cfg["image_size"])


def build_fashion_transfer(cfg: dict, device: torch.device) -> Job:
    """The few labels are drawn from the training part; the validation images are the held-out part."""
    (train_x, train_y), valid, test, mean, std = image_tensors(data.load("fashion-mnist"), device,
                                                               cfg["valid_fraction"], mean=[0.5], std=[0.5])
    keep = few_labels(train_y, cfg["labels_per_class"], cfg["seed"])
    classes = data.get("fashion-mnist").meta["classes"]
    inputs = ImageInputs(1, 28, mean, std, classes, light_on_dark=True)
    return image_job(cfg, transfer_net(cfg, len(classes), cfg["pretrained"]), (train_x[keep], train_y[keep]),
                     valid, test, inputs)


register(Task(
    name="fashion-transfer",
    description="EfficientNet-Lite0 fine-tuned on N labelled Fashion-MNIST images per class, from ImageNet "
                "weights (--set pretrained=false: the from-scratch control)",
    dataset="fashion-mnist + efficientnet-lite0-imagenet", model="EfficientNet-Lite0",
    objective="cross-entropy", metric="accuracy", options=TransferOptions, build=build_fashion_transfer,
    family=ImageClassifier(lambda cfg, inputs: transfer_net(cfg, len(inputs.classes)), build_fashion_transfer,
                           len(data.get("fashion-mnist").meta["classes"])),
    defaults={"max_steps": 150, "batch_size": 50, "lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 15,
              "crop_pad": 2, "flip": True, "eval_every": 150, "eval_batch_size": 500,
              "eval_batches": 4},   # validation on 2,000 of the 6,000 held-out images; the test set whole
))


