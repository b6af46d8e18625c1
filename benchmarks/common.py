"""What the benchmarks share: the device from --device, and waiting for the GPU before reading a clock."""
from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a build without CUDA")
        raise SystemExit(f"error: --device cuda, but CUDA is not available here ({build}); "
                         "use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
