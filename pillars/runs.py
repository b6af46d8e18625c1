"""The life of a run folder: train it, reuse it when it is finished, resume it when it was interrupted,
load it with its weights, evaluate it. The command line, the tour, the experiments and the runs a task
needs first (the GAN metrics' classifier) all go through here.

A run folder holds config.toml (the task and its whole configuration), metrics.jsonl, checkpoints/,
and at the end model.safetensors and summary.json, with the files its family keeps beside the weights
(tokenizer.json, inputs.json).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from pillars import tasks, train
from pillars.config import ConfigError, apply_overrides, read_toml
from pillars.devices import resolve_device
from pillars.weights import checkpoints, load_weights, weights_path

# where a run trains is not what it is: a run may continue on another device
_WHERE = {"device"}


def saved_config(run_dir: Path) -> tuple[str, dict]:
    """The task and whole configuration a run folder was trained with (its config.toml over the defaults)."""
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run folder (it has no config.toml)")
    saved = read_toml(path)
    task_name = saved.pop("task", None)
    if task_name is None:
        raise ConfigError(f"{path} names no task; it was not written by pillars train")
    return task_name, apply_overrides(train.default_config(tasks.get(task_name)), saved, str(path))


def settings_changed(run_dir: Path, task_name: str, cfg: dict) -> str:
    """"" when `run_dir` was trained as `task_name` with `cfg` (the device aside), else what differs. A key
    its config.toml lacks was added to pillars after the run was trained (such as valid_fraction): the run
    was not trained with it, so it differs too."""
    saved_task, saved = saved_config(run_dir)
    if saved_task != task_name:
        return f"task {saved_task} -> {task_name}"
    written = read_toml(Path(run_dir) / "config.toml")
    was = {k: repr(saved.get(k)) if k in written else "(absent)" for k in cfg}
    return ", ".join(f"{k} {was[k]} -> {v!r}" for k, v in sorted(cfg.items())
                     if k not in _WHERE and (k not in written or saved.get(k) != v))


def summary_of(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_finished(run_dir: Path) -> bool:
    summary = summary_of(run_dir)
    return summary is not None and summary.get("status") == "finished"


# ----------------------------------------------------------------------------- runs needed first

def ensure(req: tasks.Requirement, device: str, log: Callable[[str], None] = print) -> Path:
    """The required run, trained once into its folder (in this process alone, even under torchrun) and
    reused after; a folder trained with other settings is trained again."""
    cfg = train.resolve_config(req.task, overrides={**req.overrides, "device": device})
    if (req.folder / "config.toml").exists() and is_finished(req.folder) \
            and not settings_changed(req.folder, req.task, cfg):
        return req.folder
    log(f"training {req.task} into {req.folder} (needed first; once, then cached)")
    shutil.rmtree(req.folder, ignore_errors=True)
    req.folder.mkdir(parents=True)
    summary = train.fit(req.task, cfg, req.folder, progress=False, baselines=False, single_process=True)
    if summary.get("status") != "finished":
        shutil.rmtree(req.folder, ignore_errors=True)
        raise ConfigError(f"the training of {req.folder} was interrupted; nothing of it is kept, and the next "
                          "run trains it again")
    return req.folder


def ensure_requirements(task: tasks.Task, cfg: dict, log: Callable[[str], None] = print) -> None:
    """Train what `task` needs first. Under torchrun the main process trains it while the others wait."""
    if task.requires is None:
        return
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        for req in task.requires(cfg).values():
            ensure(req, cfg["device"], log)
    if distributed:
        dist.barrier()


def needs_of(task: tasks.Task, cfg: dict, device_name: str,
             train_missing: bool = False) -> dict[str, Callable[[], tasks.LoadedRun]]:
    """name -> a function that loads a required run when the task first asks for it. While training they
    were trained beforehand (`ensure_requirements`); for a finished run's `load`, `train_missing` trains
    one that is missing at that moment, outside any training loop (sampling a GAN needs no classifier)."""
    if task.requires is None:
        return {}
    loaded: dict[str, tasks.LoadedRun] = {}

    def loader(name: str, req: tasks.Requirement) -> Callable[[], tasks.LoadedRun]:
        def get() -> tasks.LoadedRun:
            if name not in loaded:
                if train_missing:
                    ensure(req, device_name)
                elif not is_finished(req.folder):
                    raise ConfigError(f"{req.folder} ({name}, needed by {task.name}) is not trained; "
                                      f"train {task.name} again and it is trained first")
                loaded[name] = load(req.folder, device_name)
            return loaded[name]
        return get

    return {name: loader(name, req) for name, req in task.requires(cfg).items()}


# ----------------------------------------------------------------------------- training

def start(task_name: str, cfg: dict, run_dir: Path, resume: bool = False, log: Callable[[str], None] = print,
          **fit_options) -> dict:
    """Train `task_name` into `run_dir` (or continue it): the runs it needs first, then the loop."""
    task = tasks.get(task_name)
    train.init_process(cfg["device"])
    ensure_requirements(task, cfg, log)
    return train.fit(task_name, cfg, Path(run_dir), resume=resume,
                     needs=needs_of(task, cfg, cfg["device"]), **fit_options)


def train_or_reuse(task_name: str, cfg: dict, run_dir: Path, log: Callable[[str], None] = print,
                   other_settings_hint: str = "choose another folder, or delete it to train it again",
                   **fit_options) -> dict:
    """The run's summary: reused when `run_dir` finished with these settings, resumed from its last checkpoint
    when it was interrupted, else trained. A folder trained with other settings is refused."""
    run_dir = Path(run_dir)
    if (run_dir / "config.toml").exists():
        diff = settings_changed(run_dir, task_name, cfg)
        if diff:
            raise ConfigError(f"{run_dir} was trained with other settings ({diff}): {other_settings_hint}")
    if is_finished(run_dir):
        return summary_of(run_dir)
    (run_dir / "summary.json").unlink(missing_ok=True)   # an interrupted run's: the resumed run writes a new one
    resume = bool(checkpoints(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    return start(task_name, cfg, run_dir, resume=resume, log=log, **fit_options)


# ----------------------------------------------------------------------------- finished runs

def load(run_dir: Path, device_name: str = "auto", overrides: dict | None = None) -> tasks.LoadedRun:
    """Rebuild a finished (or checkpointed) run's job with its trained weights; `overrides` change keys
    that act at evaluation (a translation's beam, test-time flips), not the model's shape."""
    run_dir = Path(run_dir)
    task_name, cfg = saved_config(run_dir)
    cfg = apply_overrides(cfg, overrides or {}, "the command line")
    task = tasks.get(task_name)
    device = resolve_device(device_name)
    job = task.make_job(cfg, device, needs_of(task, cfg, device.type, train_missing=True))
    job.model.to(device)
    try:
        load_weights(job.model, weights_path(run_dir))
    except (RuntimeError, ValueError):
        if not overrides:
            raise
        raise ConfigError(f"the weights of {run_dir} do not fit the model built with {overrides}: only keys "
                          "that act at evaluation (such as beam or tta_flip) can be changed") from None
    saved, rebuilt = run_dir / "tokenizer.json", task.family.files(job).get("tokenizer.json")
    if rebuilt is not None and saved.exists() \
            and json.loads(saved.read_text(encoding="utf-8")) != json.loads(rebuilt):   # the training text changed
        raise ConfigError(f"the training text of {run_dir} has changed since it was trained: its vocabulary "
                          f"differs from {saved}. Restore the text it was trained on, or train again")
    return tasks.LoadedRun(run_dir, task, cfg, job, device)


def evaluate(run_dir: Path, device_name: str = "auto", overrides: dict | None = None,
             split: str = "test") -> dict:
    """A run's figures on its test set (or `split` "valid"), the whole set."""
    run = load(run_dir, device_name, overrides)
    cfg = {**run.cfg, "eval_batches": 0}
    if run.job.conv and cfg["channels_last"]:   # as the loop evaluates it
        run.job.model.to(memory_format=torch.channels_last)
    return train.evaluate_job(run.job, run.job.model, cfg, run.device, train.Proc(), split)

