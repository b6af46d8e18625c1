"""Image classification: CNNs on registered image datasets and on a user's folder; transfer learning."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import data, metrics
from pillars.data import transforms
from pillars.data.batches import TensorBatches
from pillars.models import cnn, transformer
from pillars.tasks import Job, Task, register


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


@dataclass
class ConvNetOptions(ImageOptions):
    width: int = 32              # channels of the first stage; each later stage doubles them
    stages: int = 2
    hidden: int = 128
    batch_norm: bool = True
    dropout: float = 0.25


@dataclass
class ResNetOptions(ImageOptions):
    width: int = 32              # channels of the first stage; each later stage doubles them
    stages: int = 3
    blocks: int = 2              # basic blocks per stage
    dropout: float = 0.0
    stem_pool: bool = False      # 2x2 max-pool after the stem (every stage on a quarter of the pixels)


def scaled_pixels(pixels) -> torch.Tensor:
    """uint8 images, (N, H, W) or (N, H, W, C), as float (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(pixels).float().div_(255)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def normalised(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in (mean, std))
    return (x - mean) / std


def image_tensors(arrays: dict, device: torch.device, train_samples: int = 0, mean=None, std=None):
    """(train_x, train_y), (test_x, test_y), mean, std: float (N, C, H, W) images normalised per channel
    (with the training set's statistics unless given), int64 labels, all on `device`."""
    train_x = scaled_pixels(arrays["train_x"])
    if mean is None:
        mean, std = train_x.mean((0, 2, 3)).tolist(), train_x.std((0, 2, 3)).tolist()

    def prepare(x, y):
        return normalised(x, mean, std).to(device), torch.from_numpy(y).long().to(device)

    train_x, train_y = prepare(train_x, arrays["train_y"])
    if train_samples:
        train_x, train_y = train_x[:train_samples], train_y[:train_samples]
    return (train_x, train_y), prepare(scaled_pixels(arrays["test_x"]), arrays["test_y"]), mean, std


def image_job(cfg: dict, model: nn.Module, train: tuple, test: tuple, inputs: ImageInputs, conv: bool = True) -> Job:
    """A classification job: cross-entropy with optional label smoothing and on-device augmentation."""
    def loss(model, batch):
        x, y = batch
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

    return Job(model=model, train=TensorBatches(train, cfg["batch_size"], cfg["seed"]), test=test, loss=loss,
               eval_sums=eval_sums, summary=metrics.classification_summary, conv=conv, inputs=inputs)


def registered_images(dataset: str, make_model: Callable[[dict, int, int, int], nn.Module], conv: bool = True):
    """A `build` for a registered image dataset; `make_model(cfg, channels, size, classes)`."""
    def build(cfg: dict, device: torch.device) -> Job:
        train, test, mean, std = image_tensors(data.load(dataset), device, cfg["train_samples"])
        classes = data.get(dataset).meta["classes"]
        channels, size = train[0].shape[1], train[0].shape[-1]
        inputs = ImageInputs(channels, size, mean, std, classes, light_on_dark=True)
        return image_job(cfg, make_model(cfg, channels, size, len(classes)), train, test, inputs, conv)
    return build


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
    build=registered_images("fashion-mnist", convnet),
    defaults={"epochs": 4.0, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-4, "warmup_steps": 100},
))

register(Task(
    name="fashion-resnet",
    description="a ResNet for small images on Fashion-MNIST, with crop and flip augmentation on the device",
    dataset="fashion-mnist", model="ResNet (3 stages x 2 basic blocks, 32/64/128 channels)",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ResNetOptions,
    build=registered_images("fashion-mnist", resnet),
    defaults={"epochs": 20.0, "batch_size": 256, "lr": 4e-3, "weight_decay": 5e-2, "warmup_steps": 200,
              "precision": "bf16", "crop_pad": 2, "flip": True, "label_smoothing": 0.1},
))

register(Task(
    name="fashion-vit",
    description="a Vision Transformer on Fashion-MNIST: 7x7 patches as tokens, crop and flip augmentation",
    dataset="fashion-mnist", model="ViT (6 layers, 128 wide, 4 heads, 16 patches + [CLS])",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ViTOptions,
    build=registered_images("fashion-mnist", vit, conv=False),
    defaults={"epochs": 12.0, "batch_size": 256, "lr": 2e-3, "weight_decay": 5e-2, "warmup_steps": 300,
              "precision": "bf16", "crop_pad": 2, "flip": True, "label_smoothing": 0.1, "betas": "0.9,0.98"},
))

register(Task(
    name="mnist-5k-cnn",
    description="LeNet-5, the 1998 baseline, on the 5,000-digit MNIST subset",
    dataset="mnist-5k", model="LeNet-5", objective="cross-entropy", metric="accuracy", options=ImageOptions,
    build=registered_images("mnist-5k", lenet),
    defaults={"epochs": 30.0, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50},
))

register(Task(
    name="digits-cnn",
    description="a small CNN on scikit-learn's 8x8 digits",
    dataset="digits", model="ConvNet (2 stages, 16/32 channels)", objective="cross-entropy", metric="accuracy",
    options=ConvNetOptions, build=registered_images("digits", convnet),
    defaults={"epochs": 40.0, "batch_size": 64, "lr": 3e-3, "warmup_steps": 20, "width": 16, "hidden": 64},
))


@dataclass
class ImageFolderOptions(ResNetOptions):
    data: str = ""               # the folder: class sub-folders, or train/ and test/ holding them
    image_size: int = 64         # images are centre-cropped to a square and resized to this side
    channels: int = 0            # 1 (grey) or 3 (colour); 0: 1 when every image is grey
    test_fraction: float = 0.2   # held out for evaluation when there are no train/ and test/ folders


def build_image_folder(cfg: dict, device: torch.device) -> Job:
    from pillars.config import ConfigError
    from pillars.data.folder import load_image_folder
    if not cfg["data"]:
        raise ConfigError("image-folder trains on your own images: give the folder with --set data=DIR "
                          "(DIR/CLASS/*.jpg, or DIR/train/CLASS/... and DIR/test/CLASS/...)")
    arrays, classes = load_image_folder(cfg["data"], cfg["image_size"], cfg["channels"], cfg["test_fraction"])
    train, test, mean, std = image_tensors(arrays, device, cfg["train_samples"])
    channels = train[0].shape[1]
    inputs = ImageInputs(channels, cfg["image_size"], mean, std, classes)
    return image_job(cfg, resnet(cfg, channels, cfg["image_size"], len(classes)), train, test, inputs)


register(Task(
    name="image-folder",
    description="a ResNet on your own folder of class sub-folders (--set data=DIR)",
    dataset="your folder (--set data=DIR)", model="ResNet (3 stages x 2 basic blocks)",
    objective="cross-entropy, label smoothing 0.1", metric="accuracy", options=ImageFolderOptions,
    build=build_image_folder,
    predictor=lambda cfg, inputs: resnet(cfg, inputs.channels, inputs.size, len(inputs.classes)),
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
            from pillars.config import ConfigError
            raise ConfigError(f"labels_per_class={per_class}, but class {c} has only {len(idx)} training images")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).to(y.device)


def build_fashion_transfer(cfg: dict, device: torch.device) -> Job:
    from pillars.data.weights import efficientnet_lite0_imagenet
    arrays = data.load("fashion-mnist")
    (train_x, train_y), test, mean, std = image_tensors(arrays, device, mean=[0.5], std=[0.5])
    keep = few_labels(train_y, cfg["labels_per_class"], cfg["seed"])
    net = cnn.EfficientNetLite(cnn.EfficientNetLiteConfig(dropout=cfg["dropout"], bn_momentum=cfg["bn_momentum"]))
    if cfg["pretrained"]:
        net.load_state_dict(cnn.efficientnet_from_reference(efficientnet_lite0_imagenet()))
    classes = data.get("fashion-mnist").meta["classes"]
    net.reset_classifier(len(classes))
    inputs = ImageInputs(1, 28, mean, std, classes, light_on_dark=True)
    return image_job(cfg, Resized(net, cfg["image_size"]), (train_x[keep], train_y[keep]), test, inputs)


register(Task(
    name="fashion-transfer",
    description="EfficientNet-Lite0 fine-tuned on N labelled Fashion-MNIST images per class, from ImageNet "
                "weights (--set pretrained=false: the from-scratch control)",
    dataset="fashion-mnist + efficientnet-lite0-imagenet", model="EfficientNet-Lite0",
    objective="cross-entropy", metric="accuracy", options=TransferOptions, build=build_fashion_transfer,
    defaults={"max_steps": 150, "batch_size": 50, "lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 15,
              "crop_pad": 2, "flip": True, "eval_every": 150, "eval_batch_size": 500},
))


