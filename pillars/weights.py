"""A run's weights on disk: safetensors files written atomically, read without unpickling anything, and
checked before they are loaded: a damaged file, or one of another shape, names itself and where intact
weights of the run are."""
from __future__ import annotations

from pathlib import Path

import safetensors
import safetensors.torch
import torch
import torch.nn as nn

from pillars.config import ConfigError, atomic_path
from pillars.data.registry import InputFileError


class WeightsError(InputFileError):
    """A weights file that cannot be loaded into its model: `damaged` (cut short, or not safetensors at all),
    else of another shape (another run's file, or a configuration edited since). The message names the file,
    what is wrong and the fix; the loop's resume can catch it to fall back on an earlier checkpoint."""

    def __init__(self, message: str, path: Path, damaged: bool):
        super().__init__(message)
        self.path, self.damaged = Path(path), damaged


def save_weights(model: nn.Module, path: Path, metadata: dict | None = None) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(_dedupe_shared(state), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """Named tensors to a safetensors file, written atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)


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
    """`path`'s tensors into `model`, after checking the file's header against the model: a WeightsError
    names a damaged file, or the first tensor whose shape differs, and the run's intact weights if any."""
    path = Path(path)
    difference = _difference(model, _shapes(path))
    if difference:
        raise WeightsError(f"{path} does not fit the model: {difference}. {_remedy(path, model)}", path,
                           damaged=False)
    try:
        state = safetensors.torch.load_file(str(path), device=str(next(model.parameters()).device))
    except (safetensors.SafetensorError, OSError) as e:
        raise _damaged(path, e, model) from None
    model.load_state_dict(state, strict=False)


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a safetensors file's tensors, from its header (which must cover the whole
    file: one cut short fails here)."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError:   # missing, not damaged: the caller says which file a run lacks
        raise
    except (safetensors.SafetensorError, OSError) as e:
        raise _damaged(path, e) from None


def _damaged(path: Path, e: Exception, model: nn.Module | None = None) -> WeightsError:
    reason = str(e).removeprefix("Error while deserializing header: ")
    return WeightsError(f"{path} is damaged: it is not a whole safetensors file ({reason}). "
                        f"{_remedy(Path(path), model)}", path, damaged=True)


def _difference(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> str:
    """The first way the tensors of a file differ from the model's ("" when they fit)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k, shape in expected.items():
        if k in shapes and shapes[k] != shape:
            return f"tensor {k} is {_shape(shapes[k])} in the file, {_shape(shape)} in the model"
    missing = [k for k in expected if k not in shapes and not _is_tied(model, k)]
    unexpected = [k for k in shapes if k not in expected]
    parts = ([f"it lacks {len(missing)} of the model's tensors ({', '.join(missing[:3])}"
              f"{', ...' if len(missing) > 3 else ''})"] if missing else []) + \
            ([f"it holds {len(unexpected)} tensors the model has not ({', '.join(unexpected[:3])}"
              f"{', ...' if len(unexpected) > 3 else ''})"] if unexpected else [])
    return "; ".join(parts)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _remedy(path: Path, model: nn.Module | None) -> str:
    """Where the run keeps intact weights that fit the model: a checkpoint's, to copy back over a finished
    run's file, or the checkpoint before a damaged one."""
    in_checkpoint = path.parent.parent.name == "checkpoints"
    run_dir = path.parent.parent.parent if in_checkpoint else path.parent
    for ckpt in reversed(checkpoints(run_dir)):
        candidate = checkpoint_weights(ckpt)
        if ckpt == path.parent or not _intact(candidate, model):
            continue
        step = step_of(ckpt)
        if in_checkpoint:
            return (f"The checkpoint before it, {ckpt.name}, is intact: move {path.parent} out of "
                    f"{run_dir / 'checkpoints'} and the run continues from step {step}")
        return f"Copy the weights of its last intact checkpoint back (cp {candidate} {path}: step {step}), " \
               "or train the run again"
    return ("No checkpoint of the run holds weights that fit: if its configuration was changed since it trained "
            "(--set, or config.toml edited), restore it; otherwise train it again")


def _intact(path: Path, model: nn.Module | None) -> bool:
    try:
        shapes = _shapes(path)
    except WeightsError:
        return False
    return model is None or not _difference(model, shapes)


def _is_tied(model: nn.Module, key: str) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    deduped = dict(model.named_parameters())
    return key in params and key not in deduped


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a folder appears only when it is complete)."""
    return sorted((Path(run_dir) / "checkpoints").glob("step-*"))


def step_of(checkpoint: Path) -> int:
    """The step of a checkpoint folder (checkpoints/step-N)."""
    return int(checkpoint.name.removeprefix("step-"))


def checkpoint_weights(checkpoint: Path) -> Path:
    """What a run would be sampled from at a checkpoint: the moving average, if any, else the weights."""
    ema = checkpoint / "ema.safetensors"
    return ema if ema.exists() else checkpoint / "model.safetensors"


def weights_path(run_dir: Path) -> Path:
    """A run's final weights, or its last checkpoint's while it is training (the moving average, if any)."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.exists():
        found = checkpoints(run_dir)
        if not found:
            raise ConfigError(f"{run_dir} has no weights yet (no model.safetensors and no checkpoint): it stopped "
                              f"before its first checkpoint; `pillars train --resume {run_dir}` trains it")
        weights = checkpoint_weights(found[-1])
        if not weights.exists():   # a partial copy of the run
            raise ConfigError(f"{weights} is missing: {run_dir} is incomplete (copied in part?). Copy the run "
                              "again, or delete that checkpoint folder to use the one before it")
    return weights
