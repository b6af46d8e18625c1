"""Convolutional networks for image classification.

A convolution slides one small filter bank over every position of the image (LeCun et al. 1998), so a
pattern learned in one place is recognised in any other; pooling then discards exact positions. Stacking
conv layers grows the receptive field: early layers see edges, later layers see parts and whole objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ConvNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    widths: tuple[int, ...] = (32, 64)   # one stage per width: two 3x3 convs, then 2x2 max-pool
    hidden: int = 128                    # width of the fully connected layer before the classifier
    batch_norm: bool = True
    dropout: float = 0.25


class ConvBlock(nn.Sequential):
    """conv 3x3 -> (BatchNorm) -> ReLU. With BatchNorm the conv needs no bias (BN's shift replaces it)."""

    def __init__(self, cin: int, cout: int, batch_norm: bool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ConvNet(nn.Module):
    """A small VGG-style network (Simonyan & Zisserman 2014): stages of two 3x3 convolutions and a
    2x2 max-pool, then one hidden fully connected layer and the classifier."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.cfg = cfg
        stages, cin, side = [], cfg.in_channels, cfg.image_size
        for width in cfg.widths:
            stages += [ConvBlock(cin, width, cfg.batch_norm), ConvBlock(width, width, cfg.batch_norm),
                       nn.MaxPool2d(2)]
            cin, side = width, side // 2
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cin * side * side, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embedding(x))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations (B, hidden): the features the classifier reads."""
        return F.relu(self.fc(self.dropout(self.features(x).flatten(1))))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """The logits from the hidden layer's activations (`embedding`)."""
        return self.head(self.dropout(h))


# ----------------------------------------------------------------------------- LeNet-5 (LeCun et al. 1998)

@dataclass
class LeNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28     # the paper's 32x32 input is a 28x28 digit with a 2-pixel border: padding 2


class LeNet5(nn.Module):
    """C1 conv 5x5 (6) -> S2 pool -> C3 conv 5x5 (16) -> S4 pool -> C5 (120) -> F6 (84) -> output.
    Tanh squashing and average-pool subsampling as in the paper; a plain linear output replaces the
    paper's RBF units."""

    def __init__(self, cfg: LeNetConfig):
        super().__init__()
        self.cfg = cfg
        pad = (32 - cfg.image_size) // 2 if cfg.image_size < 32 else 0
        self.c1 = nn.Conv2d(cfg.in_channels, 6, 5, padding=pad)
        self.c3 = nn.Conv2d(6, 16, 5)
        side = ((cfg.image_size + 2 * pad - 4) // 2 - 4) // 2
        self.c5 = nn.Linear(16 * side * side, 120)
        self.f6 = nn.Linear(120, 84)
        self.head = nn.Linear(84, cfg.num_classes)
        self.features = nn.Sequential(self.c1, nn.Tanh(), nn.AvgPool2d(2), self.c3, nn.Tanh(), nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.head(torch.tanh(self.f6(torch.tanh(self.c5(x)))))


# ----------------------------------------------------------------------------- ResNet (He et al. 2016)

@dataclass
class ResNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)   # one stage per width; stages after the first halve the size
    blocks: int = 2                           # basic blocks per stage
    dropout: float = 0.0
    stem_pool: bool = False                   # 2x2 max-pool after the stem: every stage on a quarter of the pixels


class BasicBlock(nn.Module):
    """y = relu(F(x) + shortcut(x)), F = conv3x3-BN-ReLU-conv3x3-BN. The residual form lets a deep stack
    start as (nearly) the identity, which is what made very deep networks trainable."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)   # each block starts as the identity (Goyal et al. 2017)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class ResNet(nn.Module):
    """A ResNet for small images (the CIFAR form of the paper): a 3x3 stem at full resolution, stages of
    basic blocks, global average pooling and a linear classifier."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0),
                                  nn.ReLU(inplace=True), *([nn.MaxPool2d(2)] if cfg.stem_pool else []))
        stages, cin = [], w0
        for i, width in enumerate(cfg.widths):
            blocks = [BasicBlock(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1)
                      for j in range(cfg.blocks)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.dropout(x.mean((2, 3))))


# ----------------------------------------------------------------------------- EfficientNet-Lite0 (Tan & Le 2019)

@dataclass
class EfficientNetLiteConfig:
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.2
    drop_connect: float = 0.2    # stochastic depth, growing linearly with block index
    bn_momentum: float = 0.01    # TensorFlow's 0.99 decay; 0.1 lets running statistics follow a new domain sooner
    # (repeats, kernel, stride, expand ratio, in channels, out channels) of each stage of Lite0
    stages: tuple = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                     (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
    stem: int = 32
    head: int = 1280


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' padding (asymmetric for even inputs and stride 2), which
    the ported ImageNet weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True,
                 momentum: float = 0.01):
        super().__init__()
        self.conv = SameConv(cin, cout, k, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=momentum)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Mobile inverted bottleneck (Sandler et al. 2018): expand 1x1 -> depthwise kxk -> project 1x1 (linear),
    with a residual when the shape is kept. The Lite variants drop squeeze-and-excitation and use ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop: float, momentum: float):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid, momentum=momentum) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid, momentum=momentum)
        self.project = ConvBNAct(mid, cout, act=False, momentum=momentum)
        self.residual = stride == 1 and cin == cout
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop > 0:   # drop the whole branch per sample, rescale the survivors
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.drop
            out = out * keep / (1 - self.drop)
        return x + out


class EfficientNetLite(nn.Module):
    def __init__(self, cfg: EfficientNetLiteConfig = EfficientNetLiteConfig()):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBNAct(cfg.in_channels, cfg.stem, 3, 2, momentum=cfg.bn_momentum)
        specs = [(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e)
                 for r, k, s, e, cin, cout in cfg.stages for j in range(r)]
        self.blocks = nn.Sequential(*[MBConv(*spec, drop=cfg.drop_connect * i / len(specs), momentum=cfg.bn_momentum)
                                      for i, spec in enumerate(specs)])
        self.head = ConvBNAct(cfg.stages[-1][-1], cfg.head, momentum=cfg.bn_momentum)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.head, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean((2, 3))))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.cfg.head, num_classes)


def efficientnet_from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the reference EfficientNet-PyTorch layout (`_blocks.3._bn1.weight`, ...)
    to this file's names (`blocks.3.depthwise.bn.weight`, ...)."""
    block = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
             "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
           "_fc": "classifier"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            name = f"blocks.{parts[1]}.{block[parts[2]]}.{'.'.join(parts[3:])}"
        else:
            name = f"{top[parts[0]]}.{'.'.join(parts[1:])}"
        out[name] = value
    return out
