"""The life of a run folder: train it, reuse it when it is finished, resume it when it was interrupted,
load it with its weights, evaluate it. The command line, the tour, the experiments and the runs a task
needs first (the GAN metrics' classifier) all go through here.

A run folder holds config.toml (the task and its whole configuration), metrics.jsonl, checkpoints/ (with
config.toml: a copy of the configuration they were trained with, which tells an edit of the first), and at
the end model.safetensors and summary.json, with the files its family keeps beside the weights
(tokenizer.json, inputs.json). Loading a run checks each of them and names the one that is missing or
damaged, and the fix.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from pillars import tasks, train
from pillars.config import ConfigError, apply_overrides, note, read_toml, write_toml
from pillars.data import tokenizers
from pillars.data.registry import DataError, InputFileError, unwritable
from pillars.devices import resolve_device
from pillars.weights import WeightsError, checkpoints, load_weights, weights_path

# where a run trains is not what it is: a run may continue on another device
_WHERE = {"device"}
LOCK = ".lock"   # in a run folder: held (flock) by the process that writes the run
# in a run folder: a copy of config.toml written when training starts, which a user's edit of config.toml
# leaves alone: what the checkpoints were trained with
TRAINED = Path("checkpoints") / "config.toml"


@contextlib.contextmanager
def writing(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold `run_dir`'s lock while this process writes the run: a second writer (another `pillars train
    --out` into the folder, a `--resume` of a run that is still training) is refused with the holder's pid,
    or, with `wait`, waits for it (a run needed first, which the holder is training). The lock is the
    operating system's (flock): it ends with its process, however that ends, so a killed run leaves none
    behind. The file stays (removing it would let two processes lock two different files)."""
    try:
        import fcntl
    except ImportError:   # Windows: no flock; the checks on config.toml still apply
        yield
        return
    why = unwritable(run_dir)
    if why:
        raise train.WriteError(f"{run_dir} {why}: nothing was written there. Make it writable (or free space on "
                               "its disk), or choose another folder", why)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(f"{run_dir} is being written by another pillars process (pid {holder}): wait for it "
                              f"to end, or stop it (Ctrl-C saves a checkpoint) and then continue the run with "
                              f"--resume {run_dir}; to train another run, choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# what a run folder holds of its own (beside checkpoints/): no command's --out replaces them
RUN_FILES = {"config.toml", "model.safetensors", "summary.json", "metrics.jsonl", "tokenizer.json", "inputs.json",
             LOCK, "explain.json", "translations-test.tsv"}


def run_owning(path: Path) -> Path | None:
    """The run folder whose own existing file `path` is (its weights, configuration, logs, a checkpoint), if any."""
    path = Path(path).absolute()
    run = next((p for p in path.parents if (p / "config.toml").is_file()), None)
    if not path.exists() or run is None:
        return None
    own = path.name in RUN_FILES or path.name.startswith("events.out.tfevents")
    return run if (path.parent == run and own) or (run / "checkpoints") in path.parents else None


def foreign_files(run_dir: Path) -> list[str]:
    """The entries of an existing folder without a run's config.toml, the lock aside: files of the user's
    that `pillars train --out` must not write among (nor overwrite)."""
    if not run_dir.is_dir() or (run_dir / "config.toml").exists():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)


def saved_config(run_dir: Path) -> tuple[str, dict]:
    """The task and whole configuration a run folder was trained with (its config.toml over the defaults),
    checked as `pillars train` checks it: an edit that broke it names config.toml and the key."""
    path = run_folder(run_dir) / "config.toml"
    saved = read_toml(path)
    task_name = saved.pop("task", None)
    if task_name is None:
        raise ConfigError(f"{path} names no task; it was not written by pillars train")
    try:
        task = tasks.get(task_name)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}. A task of your own is loaded with --tasks FILE (or $PILLARS_TASKS)") from None
    try:
        cfg = apply_overrides(train.default_config(task), saved, str(path))
        train.check_config(cfg, task)
    except ConfigError as e:
        raise ConfigError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return task_name, cfg


def run_folder(run_dir: Path) -> Path:
    """`run_dir`, if it is a run folder; else a ConfigError that says what it is, and where a missing
    config.toml has a copy (the one kept with the checkpoints)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.toml").is_file():
        return run_dir
    if not run_dir.exists():
        raise ConfigError(f"{run_dir} does not exist: give the folder of a trained run (pillars train writes "
                          "runs/TASK)")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run folder: give the folder of a trained run")
    if (run_dir / TRAINED).is_file():
        raise ConfigError(f"{run_dir / 'config.toml'} is missing: copy back the one kept with the checkpoints "
                          f"(cp {run_dir / TRAINED} {run_dir / 'config.toml'})")
    if (run_dir / "model.safetensors").exists() or checkpoints(run_dir):
        raise ConfigError(f"{run_dir / 'config.toml'} is missing: without it the model cannot be rebuilt. "
                          "Restore it, or train the run again")
    raise ConfigError(f"{run_dir} is not a run folder (it has no config.toml)")


def config_edits(run_dir: Path, task_name: str, cfg: dict) -> str:
    """What config.toml changes from the configuration the run's checkpoints were trained with, which
    runs.start keeps in checkpoints/config.toml ("" when nothing, or for a run trained before that copy)."""
    kept = Path(run_dir) / TRAINED
    if not kept.is_file():
        return ""
    was = read_toml(kept)
    was_task = was.pop("task", None)
    if was_task != task_name:
        return f"task {was_task} -> {task_name}"
    was = apply_overrides(train.default_config(tasks.get(task_name)), was, str(kept))
    return ", ".join(f"{k} {was[k]!r} -> {v!r}" for k, v in cfg.items() if k not in _WHERE and was.get(k) != v)


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


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (none if it has none yet); a line that is not JSON (the last one, cut
    short when the run was killed while writing it) is skipped."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [row for row in rows if isinstance(row, dict)]


def summary_of(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputFileError(f"{path} is damaged ({e}): delete it, and `pillars train --resume {run_dir}` "
                             "evaluates the last checkpoint again and writes it") from None


def is_finished(run_dir: Path) -> bool:
    summary = summary_of(run_dir)
    return summary is not None and summary.get("status") == "finished"


# ----------------------------------------------------------------------------- runs needed first

REQUIRED = ".required"   # in a folder that `ensure` trains a required run into: it may empty it again


def ensure(req: tasks.Requirement, device: str, log: Callable[[str], None] = print) -> Path:
    """The required run, trained once into its folder (in this process alone, even under torchrun) and
    reused after; a folder trained with other settings is trained again when `ensure` made it (or it lies under
    $PILLARS_HOME/models); any other folder that is not empty is left as it is, and that is an error."""
    cfg = train.resolve_config(req.task, overrides={**req.overrides, "device": device})

    def ready() -> bool:
        return (req.folder / "config.toml").exists() and is_finished(req.folder) \
            and not settings_changed(req.folder, req.task, cfg)
    if ready():
        return req.folder
    why = unwritable(req.folder)
    if why:
        raise DataError(f"{req.task} must be trained first into {req.folder}, which {why}: set PILLARS_HOME to a "
                        "writable folder (the default is ~/.cache/pillars)")
    with writing(req.folder, wait=True):   # another process training it (a second test, a second run) finishes
        if ready():
            return req.folder
        refuse_to_empty(req.folder, req.task, cfg)
        log(f"training {req.task} into {req.folder} (needed first; once, then cached)")
        clear(req.folder)
        (req.folder / REQUIRED).touch()
        task = tasks.get(req.task)
        for first in (task.requires(cfg).values() if task.requires else ()):   # what it needs in turn
            ensure(first, device, log)
        with torch.enable_grad():   # it may be needed first inside an evaluation, under no_grad
            summary = train.fit(req.task, cfg, req.folder, progress=False, baselines=False, single_process=True,
                                needs=needs_of(task, cfg, cfg["device"]))
        if summary.get("status") != "finished":
            clear(req.folder)
            raise ConfigError(f"the training of {req.folder} was interrupted; nothing of it is kept, and the next "
                              "run trains it again")
    return req.folder


def refuse_to_empty(folder: Path, task_name: str, cfg: dict) -> None:
    """A ConfigError unless `folder` may be emptied for a required run: it is empty, `ensure` made it, or it
    lies under $PILLARS_HOME/models (the project's own cache). A user's folder named as a required run's place
    (a GAN's gan_dir) is never emptied."""
    from pillars import data
    if not folder.is_dir():
        return
    kept = [p for p in folder.iterdir() if p.name not in (LOCK, REQUIRED)]
    if not kept or (folder / REQUIRED).exists() or folder.resolve().is_relative_to((data.home() / "models").resolve()):
        return
    why = (f"a {saved_config(folder)[0]} run trained with other settings ({settings_changed(folder, task_name, cfg)})"
           if (folder / "config.toml").exists() else f"{len(kept)} other file{'s' if len(kept) > 1 else ''}")
    raise ConfigError(f"{folder} is where {task_name} is to be trained first, but it holds {why}, which pillars "
                      "does not delete: name a new or empty folder for it")


def clear(folder: Path) -> None:
    """Empty a folder whose lock this process holds (the lock file stays)."""
    for path in folder.iterdir():
        if path.name != LOCK:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


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
          new: bool = False, **fit_options) -> dict:
    """Train `task_name` into `run_dir` (or continue it): the runs it needs first, then the loop, while the
    main process holds the folder's lock. A `new` run refuses a folder that another process has meanwhile
    made a run of (two `pillars train --out DIR` at once)."""
    task, run_dir = tasks.get(task_name), Path(run_dir)
    proc = train.init_process(cfg["device"])
    with writing(run_dir) if proc.main else contextlib.nullcontext():
        if new and (run_dir / "config.toml").exists():
            raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                              "or choose another --out")
        if any(Path(req.folder).resolve() == run_dir.resolve() for req in (task.requires(cfg).values()
                                                                            if task.requires else ())):
            raise ConfigError(f"{run_dir} is this run's folder and the folder of a run it needs first: give that "
                              "one another folder")
        ensure_requirements(task, cfg, log)
        if proc.main:
            fit_options["on_step"] = keeping_config(run_dir, task_name, cfg, fit_options.get("on_step"))
        return train.fit(task_name, cfg, run_dir, resume=resume, needs=needs_of(task, cfg, cfg["device"]),
                         **fit_options)


def keeping_config(run_dir: Path, task_name: str, cfg: dict, on_step: Callable | None) -> Callable:
    """`on_step` that first, at the first step this process trains, writes the configuration to TRAINED: what
    the checkpoints that follow are trained with, so that a --resume can tell an edit of config.toml (which
    the loop writes at its start, before a step, and a user may edit after)."""
    kept = []

    def step(*args) -> None:
        if not kept:
            kept.append(True)
            with train.written(run_dir / TRAINED):
                (run_dir / TRAINED).parent.mkdir(parents=True, exist_ok=True)
                write_toml(run_dir / TRAINED, {"task": task_name, **cfg})
        if on_step is not None:
            on_step(*args)
    return step


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

def load(run_dir: Path, device_name: str = "auto", overrides: dict | None = None,
         need_data: bool = True, log: Callable[[str], None] | None = None) -> tasks.LoadedRun:
    """Rebuild a finished (or checkpointed) run's job with its trained weights; `overrides` change keys
    that act at evaluation (a translation's beam, test-time flips), not the model's shape. Without
    `need_data` (sampling), a family that can rebuild the run from its saved files alone when its data has
    moved does so (a language model's `saved_job`, from tokenizer.json)."""
    run_dir = Path(run_dir)
    task_name, saved_cfg = saved_config(run_dir)
    training_only = sorted(set(overrides or {}) & train.TRAINING_ONLY)
    if training_only:
        raise ConfigError(f"{', '.join(training_only)} act{'s' if len(training_only) == 1 else ''} only while a run "
                          "trains: a trained run takes --set keys that act at evaluation (such as beam, tta_flip or "
                          "eval_batch_size); to train with other values, train a new run")
    cfg = apply_overrides(saved_cfg, overrides or {}, "the command line")
    if overrides:
        train.check_config(cfg, task_name)
    task = tasks.get(task_name)
    device = resolve_device(device_name)
    summary_of(run_dir)   # a damaged summary.json names itself here, not in a family's hook
    saved = run_dir / "tokenizer.json"
    if saved.exists():
        tokenizers.load(saved)   # a damaged one names itself
    job = None if need_data else task.family.saved_job(run_dir, cfg, device)
    if job is None:
        try:
            job = task.make_job(cfg, device, needs_of(task, cfg, device.type, train_missing=True))
        except (ConfigError, DataError) as e:   # a user's file that has moved since the run trained
            if not cfg.get("data") or Path(str(cfg["data"])).expanduser().exists():
                raise
            raise ConfigError(f"{e}. {run_dir} was trained on data={cfg['data']}, and the run is rebuilt from "
                              "that data: put the file (or folder) back where it was (pillars evaluate also takes "
                              "its new place: --set data=NEW_PLACE)") from None
    job.model.to(device)
    weights = weights_path(run_dir)
    if log is not None and weights.parent != run_dir:
        log(f"{run_dir} has not finished (it has no model.safetensors): this uses its last checkpoint, "
            f"{weights.parent.name}")
    try:
        load_weights(job.model, weights)
    except WeightsError as e:
        raise weights_misfit(e, run_dir, task_name, saved_cfg, overrides) from None
    rebuilt = task.family.files(job).get("tokenizer.json")
    if rebuilt is not None and saved.exists() \
            and json.loads(saved.read_text(encoding="utf-8")) != json.loads(rebuilt):   # the training text changed
        raise ConfigError(f"the training text of {run_dir} has changed since it was trained: its vocabulary "
                          f"differs from {saved}. Restore the text it was trained on, or train again")
    return tasks.LoadedRun(run_dir, task, cfg, job, device)


def weights_misfit(e: WeightsError, run_dir: Path, task_name: str, cfg: dict, overrides: dict | None) -> Exception:
    """Why a run's weights do not fit the model rebuilt from its configuration, when the configuration is
    the cause: keys changed on the command line, or config.toml edited since the run trained."""
    if e.damaged:
        return e
    if overrides:
        return ConfigError(f"the weights of {run_dir} do not fit the model built with {overrides}: only keys "
                           "that act at evaluation (such as beam or tta_flip) can be changed")
    edits = config_edits(run_dir, task_name, cfg)
    if edits:
        return ConfigError(f"{e.path} does not fit the model: {run_dir / 'config.toml'} was edited since the run "
                           f"trained ({edits}); restore those keys (the configuration it trained with is kept in "
                           f"{run_dir / TRAINED})")
    if not (run_dir / TRAINED).is_file():   # a run trained before that copy was kept: an edit cannot be told
        return WeightsError(f"{e}; or, if {run_dir / 'config.toml'} was edited since the run trained, restore it",
                            e.path, damaged=False)
    return e


def evaluate(run_dir: Path, device_name: str = "auto", overrides: dict | None = None,
             split: str = "test", log: Callable[[str], None] | None = None) -> dict:
    """A run's figures on its test set (or `split` "valid"), the whole set."""
    if split == "valid" and "valid_fraction" in saved_config(run_dir)[1] \
            and "valid_fraction" not in read_toml(Path(run_dir) / "config.toml"):
        raise ConfigError(f"{run_dir} was trained before pillars held out a validation split (its config.toml has "
                          "no valid_fraction): it trained on what is now the validation set. Evaluate it with "
                          "--split test")
    run = load(run_dir, device_name, overrides, log=log)
    cfg = {**run.cfg, "eval_batches": 0}
    if run.job.conv and cfg["channels_last"]:   # as the loop evaluates it
        run.job.model.to(memory_format=torch.channels_last)
    return train.evaluate_job(run.job, run.job.model, cfg, run.device, train.Proc(), split, run.run_dir)


def new_run_folder(task: str, out: str | Path | None, runs_dir: str | Path, cfg: dict) -> tuple[Path, bool | None]:
    """--out, or runs/TASK, runs/TASK-2, ... (decided by the main process under torchrun), and whether it
    continues a run: None for a new one; under torchrun, True (from its last checkpoint) or False (from the
    start) when --out holds an unfinished run of the same settings, which is what torchrun's elastic agent
    asks of a restarted worker (`--max-restarts`)."""
    elastic = os.environ.get("TORCHELASTIC_RUN_ID") is not None
    if not out:
        if elastic and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
            raise ConfigError("torchrun --max-restarts restarts the workers with the same command: give the run "
                              "a folder with --out RUN_DIR, so that a restart continues it there")
        return train.new_run_dir(Path(runs_dir), task), None
    run_dir = Path(out)
    if (run_dir / "config.toml").exists():
        try:
            names_task = "task" in read_toml(run_dir / "config.toml")
        except ConfigError:   # not TOML at all
            names_task = False
        if not names_task:
            raise ConfigError(f"--out {run_dir} holds a config.toml that is not a pillars run's (it names no task); "
                              "nothing was written there. Choose a new or empty folder")
        if elastic and not is_finished(run_dir) and not settings_changed(run_dir, task, cfg):
            found = train.checkpoints(run_dir)
            note(f"{run_dir} holds this unfinished run (torchrun restart "
                 f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}): continuing it from "
                 f"{found[-1].name if found else 'the start, as it has no checkpoint'}")
            return run_dir, bool(found)
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                          "or choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder: choose another --out")
    foreign = foreign_files(run_dir)
    if foreign:
        raise ConfigError(f"--out {run_dir} holds files that are not a pillars run ({', '.join(foreign[:5])}"
                          f"{', ...' if len(foreign) > 5 else ''}); nothing was written there. Choose a new "
                          "or empty folder")
    why = unwritable(run_dir)
    if why:
        raise ConfigError(f"--out {run_dir} {why}: nothing was written there. Choose a folder that can be written")
    return run_dir, None
