"""Convolutional networks for image classification.

A convolution slides one small filter bank over every position of the image (LeCun et al. 1998), so a
pattern learned in one place is recognised in any other; pooling then discards exact positions. Stacking
conv layers grows the receptive field: early layers see edges, later layers see parts and whole objects.
"""
from __future__ import annotations

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
        x = self.features(x).flatten(1)
        x = F.relu(self.fc(self.dropout(x)))
        return self.head(self.dropout(x))
