"""What the benchmarks share: the device from --device, waiting for the GPU before reading a clock, and the
rate of a large matmul (the attainable peak that efficiency figures compare with)."""
from __future__ import annotations

import time

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


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """FLOP/s of torch.mm on two n x n matrices: the best of repeated runs over about `seconds`."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    sync(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best
