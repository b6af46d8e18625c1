"""Run folders and checkpoints: everything exact resume needs, written atomically.

A checkpoint is a folder `checkpoints/step-N` holding model.safetensors (ema.safetensors too with a moving
average) and state.pt (optimizer, grad scaler, step, timers, every process's RNG states), loaded with
weights_only=True. It is written under a temporary name and renamed, so it is either whole or absent.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pillars.weights import checkpoints, save_weights


def new_run_dir(base: Path, name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3 ... : an earlier run is never overwritten."""
    path, k = base / name, 1
    while path.exists():
        k += 1
        path = base / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, state: dict, keep: int,
                    ema: nn.Module | None = None) -> Path:
    """Write weights (safetensors; the moving average's too, if any) and the rest (state.pt) into a
    temporary folder, then rename it."""
    root = run_dir / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors", {"step": str(step)})
    if ema is not None:
        save_weights(ema, tmp / "ema.safetensors", {"step": str(step)})
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(checkpoint: Path) -> dict:
    """A checkpoint's state.pt (tensors and plain values only: nothing is unpickled as code)."""
    return torch.load(checkpoint / "state.pt", weights_only=True, map_location="cpu")


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Temporary folders of checkpoint writes that a kill cut off."""
    for stale in (run_dir / "checkpoints").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
