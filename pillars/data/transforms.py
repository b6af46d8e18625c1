"""Augmentation and preprocessing as batched tensor ops on the training device (no per-image Python).
Randomness comes from torch's global generator, whose state every checkpoint saves."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad by `pad` pixels (zeros) and cut a random window of the original size from each image."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]   # n, 1, h, 1
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]   # n, 1, 1, w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


def random_erase(x: torch.Tensor, p: float, area: tuple = (0.02, 0.4), ratio: tuple = (0.3, 1 / 0.3)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): with probability `p`, replace a random rectangle of each image,
    covering a fraction `area` of it with aspect ratio (height / width) in `ratio` (log-uniform), by
    Gaussian noise (the images are normalised, so N(0, 1) has their scale). A rectangle larger than the
    image is clipped to it, where the paper draws again."""
    if p <= 0:
        return x
    n, c, h, w = x.shape
    dev = x.device
    target = torch.empty(n, device=dev).uniform_(*area) * h * w
    aspect = torch.empty(n, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1])).exp()
    eh = (target * aspect).sqrt().round().clamp(1, h)
    ew = (target / aspect).sqrt().round().clamp(1, w)
    top = (torch.rand(n, device=dev) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=dev) * (w - ew + 1)).floor()
    erase = torch.rand(n, device=dev) < p
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])    # n, h
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # n, w
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None])[:, None]   # n, 1, h, w
    return torch.where(mask, torch.randn_like(x), x)


def shift(x: torch.Tensor, dx: int, dy: int = 0) -> torch.Tensor:
    """Translate images by (dx, dy) pixels, filling with the value of the top-left pixel (background)."""
    fill = x[..., :1, :1]
    out = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if dx > 0:
        out[..., :, :dx] = fill
    elif dx < 0:
        out[..., :, dx:] = fill
    if dy > 0:
        out[..., :dy, :] = fill
    elif dy < 0:
        out[..., dy:, :] = fill
    return out
