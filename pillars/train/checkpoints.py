"""Run folders and checkpoints: everything exact resume needs, written atomically.

A checkpoint is a folder `checkpoints/step-N` holding model.safetensors (ema.safetensors too with a moving
average) and state.pt (optimizer, grad scaler, step, timers, every process's RNG states), loaded with
weights_only=True. It is written under a temporary name and renamed, so it is either whole or absent.

A write that fails (a full disk, a folder become read-only) raises a WriteError naming the file and the
operating system's reason, and leaves no temporary file; a checkpoint that cannot be read back raises a
DamagedCheckpoint naming its file and why, and the loop falls back to the one before.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError

from pillars.config import ConfigError
from pillars.data.registry import os_error_text
from pillars.weights import WeightsError, checkpoints, save_weights

# what loading a damaged file raises: cut short (OSError, RuntimeError, EOFError, SafetensorError), a pickle
# that weights_only refuses (UnpicklingError), a state of something else (ValueError, KeyError, TypeError,
# IndexError)
UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError, IndexError, pickle.UnpicklingError,
              SafetensorError)


class WriteError(ConfigError):
    """A file of a run cannot be written (a full disk, a read-only folder): exit status 2, as for a bad input,
    since the fix is the user's. `reason` is the operating system's."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class DamagedCheckpoint(Exception):
    """A checkpoint's file cannot be read back (cut short, not written by pillars, a pickle refused); the
    message names it and why."""


@contextlib.contextmanager
def written(path: Path):
    """Turn a failed write of `path` into a WriteError naming it and the operating system's reason, and remove
    the temporary file that an atomic write leaves (`.NAME.tmpPID`, as config.atomic_path
    names it) where its writer did not: a run folder keeps no debris that `--out` would take for a user's file."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        reason = os_error_text(e)
        if reason is None:
            raise
        with contextlib.suppress(OSError):
            Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}").unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {reason}", reason) from None


@contextlib.contextmanager
def reading(ckpt: Path, name: str):
    """Turn a failure to load file `name` of checkpoint `ckpt` into a DamagedCheckpoint that says why. Weights
    of another shape pass unchanged: the configuration changed, not the file, and no earlier checkpoint fits
    better."""
    try:
        yield
    except WeightsError as e:
        if not e.damaged:
            raise
        why = "is not a whole safetensors file (cut short, or not safetensors at all)"
        raise DamagedCheckpoint(f"{ckpt / name} {why if (ckpt / name).exists() else 'is missing'}") from None
    except UNREADABLE as e:
        raise DamagedCheckpoint(f"{ckpt / name} {unreadable(e)}") from None


def unreadable(e: Exception) -> str:
    """Why a checkpoint's file cannot be used ("is ...", "lacks ..."), from what loading it raised. A pickle
    that weights_only refuses is named for what it is, never with torch's advice to load it unsafely."""
    first = (str(e).strip().splitlines() or [""])[0] or type(e).__name__
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in first:
        return "holds objects other than tensors and plain values: it was not loaded, as that could run code"
    if isinstance(e, FileNotFoundError):
        return "is missing"
    if isinstance(e, KeyError):
        return f"lacks {e}"
    if isinstance(e, ValueError):   # torch's: an optimizer state of other parameters
        return f"does not fit this run ({first})"
    return f"is cut short or was not written by pillars ({first})"


def new_run_dir(base: Path, name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3 ... : an earlier run is never overwritten."""
    path, k = base / name, 1
    while path.exists():
        k += 1
        path = base / f"{name}-{k}"
    try:
        path.mkdir(parents=True)
    except OSError as e:
        if os_error_text(e) is None:
            raise
        raise WriteError(f"cannot create {path}: {os_error_text(e)}. Nothing was written: choose a folder that "
                         "can be written with --runs or --out", os_error_text(e)) from None
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
    temporary folder, then rename it. A failed write removes the temporary folder and raises a WriteError;
    the checkpoints before it are untouched."""
    root = run_dir / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    try:
        with written(final):
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_weights(model, tmp / "model.safetensors", {"step": str(step)})
            if ema is not None:
                save_weights(ema, tmp / "ema.safetensors", {"step": str(step)})
            save_state(state, tmp / "state.pt")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # what a failed write left (nothing once renamed)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_state(state: dict, path: Path) -> None:
    """torch.save through memory, then one write by Python's own file: a failed write reports the operating
    system's reason (torch's own writer reports only "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getbuffer())


def load_state(checkpoint: Path) -> dict:
    """A checkpoint's state.pt (tensors and plain values only: nothing is unpickled as code)."""
    return torch.load(checkpoint / "state.pt", weights_only=True, map_location="cpu")


def set_aside(checkpoint: Path) -> Path:
    """Move a damaged checkpoint to checkpoints/damaged-step-N: it is not resumed from again, nor counted among
    the `keep_checkpoints` kept (where it would push out a good one)."""
    target = checkpoint.with_name(f"damaged-{checkpoint.name}")
    with written(target):
        shutil.rmtree(target, ignore_errors=True)
        os.replace(checkpoint, target)
    return target


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Temporary folders of checkpoint writes that a kill cut off."""
    for stale in (run_dir / "checkpoints").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
