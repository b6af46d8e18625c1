"""Where a run computes: the device, mixed precision, and the machine's name for reports."""
from __future__ import annotations

import functools
import platform
from contextlib import nullcontext
from pathlib import Path

import torch

from pillars.config import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but this torch has no CUDA device "
                              "(install a CUDA build of torch, see the README, or use --device cpu)")
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps was asked for, but it is not available here; use --device cpu")
    return torch.device(name)


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether this device computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512_BF16 or AMX (Linux's /proc/cpuinfo names them). Elsewhere bf16 is emulated, and on a CPU with
    AVX2 alone a bf16 matrix product runs over 100 times slower than fp32 (1 against 160 GFLOP/s on an EPYC)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" is bf16 where the device computes it natively, else fp32 ("32"); other values stay."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device.type) else "32"


def precision_note(precision: str, device: torch.device) -> str | None:
    """A warning for a precision that runs slowly on this device, or None: fp16 on a CPU, and bf16 asked for
    by name on a CPU without bf16 units (there a matrix product is emulated: 1 GFLOP/s against 161 in fp32
    on a 2-core AMD EPYC with AVX2, 61 against 320 on an Intel Xeon with AVX-512 and no AMX)."""
    if device.type != "cpu":
        return None
    if resolve_precision(precision, device) == "16":
        return "fp16 autocast on the CPU is slow and rarely supported well; bf16 is the CPU's half precision"
    if precision == "bf16" and x86_linux() and not native_bf16("cpu"):
        return ("this CPU has no bf16 units (no avx512_bf16 or amx_bf16 in /proc/cpuinfo): bf16 is emulated, "
                "and a matrix product runs 5 to over 100 times slower than in fp32; precision auto or 32 is "
                "faster here")
    return None


def x86_linux() -> bool:
    """Whether /proc/cpuinfo names this CPU's x86 units (bf16 elsewhere is not looked for: no warning there)."""
    return platform.machine().lower() in ("x86_64", "amd64") and Path("/proc/cpuinfo").exists()


def autocast(device: torch.device, precision: str):
    precision = resolve_precision(precision, device)
    if precision == "32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def machine_name() -> str:
    """The device a figure was measured on: the GPU's name, or the CPU's model, its widest matrix units
    (AMX, AVX-512 BF16, AVX-512, AVX2: the same model name comes with different ones) and the threads used."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model, flags = platform.machine() + " CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model.endswith(" CPU"):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    units = next((name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"),
                                          ("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")
    n = torch.get_num_threads()
    return f"{model}{f' ({units})' if units else ''}, {n} thread{'s' if n > 1 else ''}"
