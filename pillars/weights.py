"""A run's weights on disk: safetensors files written atomically, read without unpickling anything."""
from __future__ import annotations

import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch
import torch.nn as nn

from pillars.config import ConfigError


def save_weights(model: nn.Module, path: Path, metadata: dict | None = None) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(_dedupe_shared(state), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """Named tensors to a safetensors file, written atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The named tensors of a safetensors file on the CPU, and its metadata."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _dedupe_shared(state: dict) -> dict:
    """safetensors stores no two names for one storage (tied embeddings): keep the first name."""
    seen, out = set(), {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key not in seen:
            seen.add(key)
            out[k] = v
    return out


def load_weights(model: nn.Module, path: Path) -> None:
    state = safetensors.torch.load_file(str(path), device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if _is_tied(model, k)}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{path} does not match the model: missing {sorted(set(missing) - tied)}, "
                         f"unexpected {sorted(unexpected)}")


def _is_tied(model: nn.Module, key: str) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    deduped = dict(model.named_parameters())
    return key in params and key not in deduped


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a folder appears only when it is complete)."""
    return sorted((Path(run_dir) / "checkpoints").glob("step-*"))


def weights_path(run_dir: Path) -> Path:
    """A run's final weights, or its last checkpoint's while it is training (the moving average, if any)."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.exists():
        found = checkpoints(run_dir)
        if not found:
            raise ConfigError(f"{run_dir} has no weights yet (no model.safetensors and no checkpoint)")
        weights = found[-1] / "ema.safetensors"
        if not weights.exists():
            weights = found[-1] / "model.safetensors"
    return weights
