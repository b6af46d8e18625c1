"""The one training loop that every task shares.

The loop knows nothing of a model family: a task hands it a `Job` (model, data, objective, metric).
It does mixed precision, torch.compile, gradient accumulation and clipping, warmup + cosine decay,
evaluation, logs (metrics.jsonl, TensorBoard), atomic checkpoints and exact resume. The parts of a step
(data, forward, backward, optimizer, log) are labelled for torch.profiler: benchmarks/profile_step.py.

Evaluation: every `eval_every` steps on the validation split (logged as "valid"; the best validation
figure is kept); at the end once more on the validation split, then once on the test split ("test").

Exact resume: the batch of step k is a pure function of (seed, k), the learning rate is a function of k,
and a checkpoint holds the weights, the optimizer, the grad scaler and every RNG state. A run killed at
any point and resumed from its last checkpoint therefore ends, on the CPU, with bitwise the same weights.

Faults: a write that fails (a full disk, a folder become read-only) stops the run with a WriteError (exit
status 2) naming the file, the operating system's reason, the last good checkpoint, which it keeps, and the
command that continues the run. A resume whose latest checkpoint cannot be read back (cut short, a pickle
that is refused) sets it aside as checkpoints/damaged-step-N and continues from the one before, saying so.
"""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from pillars import tasks
from pillars.config import ConfigError, write_text_atomic, write_toml
from pillars.data.batches import eval_batches
from pillars.devices import autocast, machine_name, precision_note, resolve_device, resolve_precision
from pillars.plots import save_image_grid
from pillars.train.checkpoints import (DamagedCheckpoint, WriteError, load_state, reading, remove_partial_checkpoints,
                                       rng_state, save_checkpoint, seed_everything, set_aside, set_rng_state, written)
from pillars.train.distributed import (Proc, agree_to_stop, all_reduce_sums, check_in_step, init_process,
                                       mean_over_processes)
from pillars.train.log import MetricsLog, default_console, figures_text, progress_bar
from pillars.train.optim import lr_at, make_optimizer, moving_average
from pillars.weights import checkpoints, load_weights, save_weights, step_of


class NonFiniteLoss(RuntimeError):
    pass


class StopRequested(Exception):
    pass


def evaluate_job(job: tasks.Job, model: nn.Module, cfg: dict, device: torch.device, proc: Proc,
                 split: str = "test", run_dir: Path | None = None) -> dict:
    """The task's figures on one split ("valid" or "test"), sharded over the processes; with `run_dir`, the
    files of the job's `outputs` are written into it."""
    data = {"valid": job.valid, "test": job.test}[split]
    was_training = model.training
    model.eval()
    total: dict[str, torch.Tensor] = {}
    with torch.no_grad(), autocast(device, cfg["precision"]):
        for batch in eval_batches(data, cfg["eval_batch_size"], proc.rank, proc.world, cfg["eval_batches"]):
            if job.conv and cfg["channels_last"]:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
            for k, v in job.eval_sums(model, batch).items():
                total[k] = total[k] + v if k in total else v
    model.train(was_training)
    sums = all_reduce_sums(total, proc)
    if run_dir is not None and proc.main and job.outputs is not None:
        for name, text in job.outputs(split, sums).items():
            with written(run_dir / name):
                write_text_atomic(run_dir / name, text)
    return job.summary(sums)


@dataclass
class Window:
    """What the loop has seen since it last logged."""
    samples: int = 0
    start: float = field(default_factory=time.time)
    losses: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)


@dataclass
class Trainer:
    """Everything a run carries from step to step."""
    task: tasks.Task
    cfg: dict
    run_dir: Path
    proc: Proc
    device: torch.device
    job: tasks.Job
    raw_model: nn.Module          # the module itself: checkpoints, clipping
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: nn.Module | None
    console: object
    total: int
    steps_per_epoch: int
    eval_every: int
    ckpt_every: int
    model: nn.Module | None = None       # what the step calls: compiled, in DistributedDataParallel
    eval_model: nn.Module | None = None  # what is evaluated: compiled, not wrapped (eval_sums may reach into it)
    step: int = 0
    best: float | None = None
    best_step: int | None = None
    elapsed_before: float = 0.0
    train_before: float = 0.0
    overhead: float = 0.0                # evaluation and checkpoint seconds, not counted as training
    t0: float = field(default_factory=time.time)
    window: Window = field(default_factory=Window)
    valid: dict = field(default_factory=dict)   # the last validation figures
    info: str = ""
    log: MetricsLog | None = None
    stopped_by: int = 0                  # the signal that asked the run to stop (SIGINT, SIGTERM), if one did

    @property
    def world(self) -> int:
        return self.proc.world

    @property
    def final_model(self) -> nn.Module:
        """What is sampled from and saved as the run's weights: the moving average, if any."""
        return self.ema.module if self.ema is not None else self.raw_model

    @property
    def metric(self) -> str:
        return self.task.metric

    def train_seconds(self) -> float:
        """Wall time spent training so far, without evaluations and checkpoints."""
        return self.train_before + time.time() - self.t0 - self.overhead


# ----------------------------------------------------------------------------- setting up

def build_trainer(task_name: str, cfg: dict, run_dir: Path, console, single_process: bool,
                  needs: dict | None) -> Trainer:
    task = tasks.get(task_name)
    proc = Proc() if single_process else init_process(cfg["device"])
    device = resolve_device(cfg["device"], proc.local_rank)
    if cfg["batch_size"] % (proc.world * cfg["accum_steps"]):
        raise ConfigError(f"batch_size {cfg['batch_size']} must divide evenly over {proc.world} processes x "
                          f"{cfg['accum_steps']} accumulation steps")
    if proc.main and (note := precision_note(cfg["precision"], device)):
        console.print(f"[yellow]{note}[/]")
    seed_everything(cfg["seed"])
    if proc.world > 1 and not proc.main:   # the main process fills an empty data cache first, the others then read it
        dist.barrier()
    job = task.make_job(cfg, device, needs)
    if proc.world > 1 and proc.main:
        dist.barrier()
    model = job.model.to(device)
    if job.conv and cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if proc.world > 1 and cfg["sync_bn"]:
        if device.type == "cpu":
            raise ConfigError("sync_bn needs GPUs (SyncBatchNorm does not run on the CPU); drop --set sync_bn=true")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, cfg, device)
    ema = moving_average(model, cfg["ema"])
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(cfg["precision"], device) == "16")
    steps_per_epoch = job.train.steps_per_epoch
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * steps_per_epoch))
    eval_every = cfg["eval_every"] or steps_per_epoch
    seed_everything(cfg["seed"] + proc.rank)   # data order is seeded apart; this drives dropout etc.
    return Trainer(task, cfg, run_dir, proc, device, job, model, optimizer, scaler, ema, console, total,
                   steps_per_epoch, eval_every, cfg["checkpoint_every"] or eval_every)


def load_checkpoint(t: Trainer, ckpt: Path) -> None:
    """Load checkpoint `ckpt` into the trainer: weights, moving average, optimizer, scaler, step, timers and
    RNG states. A file that cannot be read back raises DamagedCheckpoint (what it half loaded, the checkpoint
    loaded next overwrites); weights of another shape, from a changed configuration, raise their own error."""
    with reading(ckpt, "state.pt"):
        state = load_state(ckpt)
        step, best, elapsed, train_time, rngs = (state[k] for k in ("step", "best", "elapsed", "train_time", "rng"))
    with reading(ckpt, "model.safetensors"):
        load_weights(t.raw_model, ckpt / "model.safetensors")
    has_ema = t.ema is not None and (ckpt / "ema.safetensors").exists()
    if has_ema:
        with reading(ckpt, "ema.safetensors"):
            load_weights(t.ema.module, ckpt / "ema.safetensors")
    with reading(ckpt, "state.pt"):
        t.optimizer.load_state_dict(state["optimizer"])
        t.scaler.load_state_dict(state["scaler"])
        set_rng_state(rngs[t.proc.rank] if len(rngs) == t.world else rngs[0])
        if has_ema:
            t.ema.n_averaged.fill_(state["ema_updates"])
    t.step, t.best, t.best_step = step, best, state.get("best_step")
    t.elapsed_before, t.train_before = elapsed, train_time
    if t.ema is not None and not has_ema and t.proc.main:
        t.console.print(f"{ckpt} holds no moving average (the run was trained without ema): it starts "
                        "from the current weights")


def restore(t: Trainer) -> dict | None:
    """Continue from the last checkpoint that can be read back (a damaged one is set aside, with a warning);
    returns the summary of a run that had already finished."""
    found = checkpoints(t.run_dir)
    if not found:
        raise ConfigError(f"{t.run_dir} has no checkpoint to resume from; start it again without --resume")
    damaged: list[tuple[Path, str]] = []
    for ckpt in reversed(found):
        try:
            load_checkpoint(t, ckpt)
            break
        except DamagedCheckpoint as e:
            damaged.append((ckpt, str(e)))
    else:
        raise ConfigError(f"no checkpoint of {t.run_dir} can be resumed from: {'; '.join(w for _, w in damaged)}. "
                          "To train the run again from the start with its saved configuration, move "
                          f"{t.run_dir / 'checkpoints'} aside (or delete it), then run: pillars train --resume "
                          f"{t.run_dir}")
    if damaged and t.proc.main:
        moved = "; ".join(f"{why}: that checkpoint is moved to {set_aside(ckpt)}" for ckpt, why in damaged)
        t.console.print(f"warning: {moved}. Resuming from step {t.step} instead of {step_of(found[-1])}",
                        style="yellow", markup=False, highlight=False)
    if t.step > t.total:
        raise ConfigError(f"{t.run_dir} has trained {t.step} steps, more than the {t.total} asked for now (max_steps "
                          "or epochs): give more to train it further, or evaluate it as it is")
    if t.step >= t.total and (t.run_dir / "summary.json").exists():
        try:
            summary = json.loads((t.run_dir / "summary.json").read_text())
        except ValueError:   # cut short or edited: the last checkpoint is evaluated again and the file rewritten
            summary = None
            if t.proc.main:
                t.console.print(f"{t.run_dir / 'summary.json'} is damaged: evaluating step {t.step} again to write "
                                "it", markup=False, highlight=False)
        if summary is not None:
            if t.proc.main:
                t.console.print(f"{t.run_dir} already finished at step {t.step}; raise --max-steps or --epochs "
                                "to train it further")
            return summary
    remove_partial_checkpoints(t.run_dir)
    if t.proc.main:
        t.console.print(f"resuming {t.run_dir} from step {t.step}")
    return None


def prepare(t: Trainer, resume: bool) -> None:
    """Compile and wrap the model; open the logs; write the configuration and the files kept beside the
    weights (main process)."""
    t.model = torch.compile(t.raw_model) if t.cfg["compile"] else t.raw_model
    t.eval_model = t.ema.module if t.ema is not None else t.model
    if t.world > 1:
        t.model = nn.parallel.DistributedDataParallel(
            t.model, device_ids=[t.device.index] if t.device.type == "cuda" else None)
    if not t.proc.main:
        return
    with written(t.run_dir / "config.toml"):   # first: once anything is written, the folder is a run to resume
        write_toml(t.run_dir / "config.toml", {"task": t.task.name, **t.cfg})
    t.log = MetricsLog(t.run_dir, t.step if resume else None, t.total)
    for name, text in t.task.family.files(t.job).items():
        with written(t.run_dir / name):
            write_text_atomic(t.run_dir / name, text)
    n_params = sum(p.numel() for p in t.raw_model.parameters())
    precision = resolve_precision(t.cfg["precision"], t.device)
    t.console.print(f"[bold]{t.task.name}[/]: {t.task.description}\n  {n_params:,} parameters, "
                    f"{len(t.job.train):,} training examples, {t.total} steps of {t.cfg['batch_size']} on "
                    f"{t.device} x{t.world}, precision {precision} -> {t.run_dir}")


# ----------------------------------------------------------------------------- one step, and what follows it

def phase(name: str):
    """A labelled span of the step for torch.profiler (benchmarks/profile_step.py); next to free otherwise."""
    return torch.profiler.record_function(f"step: {name}")


def train_step(t: Trainer) -> float:
    """One optimizer step over `accum_steps` micro-batches; returns its learning rate."""
    cfg, accum = t.cfg, t.cfg["accum_steps"]
    lr = lr_at(t.step, t.total, cfg)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    with phase("data"):
        batch = t.job.train.batch(t.step, t.proc.rank, t.world)
    step_loss = torch.zeros((), device=t.device)
    for j, mb in enumerate(zip(*(x.chunk(accum) for x in batch))):
        if t.job.conv and cfg["channels_last"]:
            mb = (mb[0].contiguous(memory_format=torch.channels_last), *mb[1:])
        sync = t.world == 1 or j == accum - 1
        with (nullcontext() if sync else t.model.no_sync()), autocast(t.device, cfg["precision"]), phase("forward"):
            loss = t.job.loss(t.model, mb)
        if isinstance(loss, tuple):   # (loss, figures to log), e.g. a GAN's two losses
            loss, extra = loss
            for k, v in extra.items():
                t.window.extras.setdefault(k, []).append(v.detach().float() / accum)
        loss = loss / accum
        with phase("backward"):
            t.scaler.scale(loss).backward()
        step_loss += loss.detach()
    with phase("optimizer"):
        if cfg["grad_clip"] > 0:
            t.scaler.unscale_(t.optimizer)
            nn.utils.clip_grad_norm_(t.raw_model.parameters(), cfg["grad_clip"])
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.optimizer.zero_grad(set_to_none=True)
        if t.ema is not None:
            t.ema.update_parameters(t.raw_model)
    t.step += 1
    t.window.samples += cfg["batch_size"]
    t.window.losses.append(step_loss)
    return lr


def log_window(t: Trainer, lr: float) -> None:
    """The mean training loss, speed and extra figures since the last log line."""
    mean_loss = mean_over_processes(torch.stack(t.window.losses).mean(), t.world).item()
    if not math.isfinite(mean_loss):
        raise NonFiniteLoss(f"the training loss became {mean_loss} at step {t.step}")
    rate = t.window.samples / (time.time() - t.window.start)
    accum, tps = t.cfg["accum_steps"], t.job.tokens_per_sample
    extras = {k: torch.stack(v).sum().item() / (len(v) // accum) for k, v in t.window.extras.items()}
    if t.proc.main:
        t.log.write(t.step, "train", {"loss": mean_loss, **extras, "lr": lr, "samples_per_s": rate,
                                      **({"tokens_per_s": rate * tps} if tps else {})})
        speed = f"{rate * tps:,.0f} tokens/s" if tps else f"{rate:,.0f} samples/s"
        t.info = f"loss {mean_loss:.4f}  lr {lr:.2e}  {speed}"
    t.window = Window()


def evaluate(t: Trainer, split: str, whole: bool = False) -> dict:
    """Evaluate on `split`, log it; a validation figure may become the best one. Its time is not training."""
    began, trained = time.time(), t.train_seconds()   # the training time up to this evaluation, not through it
    cfg = {**t.cfg, "eval_batches": 0} if whole else t.cfg
    result = evaluate_job(t.job, t.eval_model, cfg, t.device, t.proc, split, t.run_dir)
    result["train_time_s"] = round(trained, 2)
    if split == "valid":
        score = result[t.metric if t.metric in result else "loss"]
        if t.best is None or (score > t.best if t.task.higher_is_better else score < t.best):
            t.best, t.best_step = score, t.step
        if t.proc.main and t.job.images is not None:   # e.g. a GAN's samples from a fixed noise batch
            grid, path = t.job.images(t.final_model), t.run_dir / "samples" / f"step-{t.step:06d}.png"
            with written(path):
                save_image_grid(grid, path)
            t.log.tb.image("samples", grid, t.step)
    if t.proc.main:
        t.log.write(t.step, split, result)
        t.console.print(f"step {t.step}/{t.total} (epoch {t.step / t.steps_per_epoch:.2f}) {split}: "
                        + figures_text(result))
    t.overhead += time.time() - began
    return result


def checkpoint(t: Trainer) -> None:
    began = time.time()
    state = {"step": t.step, "best": t.best, "best_step": t.best_step,
             "elapsed": t.elapsed_before + time.time() - t.t0, "train_time": t.train_seconds(),
             "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict(), "rng": [rng_state()]}
    if t.ema is not None:
        state["ema_updates"] = int(t.ema.n_averaged)
    if t.world > 1:
        rngs = [None] * t.world
        dist.all_gather_object(rngs, state["rng"][0])
        state["rng"] = rngs
    if not all(torch.isfinite(p).all() for p in t.raw_model.parameters()):
        raise NonFiniteLoss(f"the weights became non-finite at step {t.step}")
    if t.world > 1:
        check_in_step(t.raw_model, t.step)
    if t.proc.main:
        save_checkpoint(t.run_dir, t.step, t.raw_model, state, t.cfg["keep_checkpoints"],
                        t.ema.module if t.ema is not None else None)
    if t.world > 1:
        dist.barrier()
    t.overhead += time.time() - began


def after_step(t: Trainer, lr: float, stop_asked: bool, on_step) -> bool:
    """Log, evaluate and checkpoint when due; True when the run must stop here (every process agrees)."""
    log_now = t.step % t.cfg["log_every"] == 0
    stop = stop_asked
    if t.world > 1:   # every process must stop at the same step
        stop = agree_to_stop(stop, t.device) if log_now else False
    due_eval = t.step % t.eval_every == 0 and t.step < t.total   # the last evaluations come after the loop
    due_ckpt = t.step % t.ckpt_every == 0 or t.step == t.total or stop
    if log_now or due_eval or due_ckpt:
        with phase("log"):
            log_window(t, lr)
    if on_step is not None:
        on_step(t.step, t.total, t.info)
    if due_eval:
        evaluate(t, "valid")
    if due_ckpt:
        checkpoint(t)
    if due_eval or due_ckpt:
        t.window.start = time.time()
    return stop and t.step < t.total


# ----------------------------------------------------------------------------- the loop

def stop_on_signals():
    """First Ctrl-C (or SIGTERM) asks the loop to checkpoint and stop after the current step; a second
    one interrupts at once."""
    flag = {"stop": False, "signal": 0}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"], flag["signal"] = True, signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return flag, previous


def run_steps(t: Trainer, progress: bool, on_step) -> str:
    """Train to the last step; returns "finished", or "interrupted" after a checkpoint when asked to stop."""
    flag, previous = stop_on_signals()
    bar = progress_bar(t.console, enabled=progress and t.proc.main)
    tid = bar.add_task(t.task.name, total=t.total, completed=t.step, info="")

    def show(step: int, total: int, info: str) -> None:
        bar.update(tid, completed=step, info=info)
        if on_step is not None:
            on_step(step, total, info)

    t.t0, t.window = time.time(), Window()
    t.raw_model.train()
    try:
        with bar:
            while t.step < t.total:
                lr = train_step(t)
                if after_step(t, lr, flag["stop"], show):
                    raise StopRequested
        return "finished"
    except NonFiniteLoss as e:
        kept = checkpoints(t.run_dir)
        raise NonFiniteLoss(f"{e}; the run stopped. The last good checkpoint is "
                            f"{kept[-1] if kept else '(none yet)'}: lower --lr, set grad_clip, or use "
                            f"--precision 32, then continue with --resume {t.run_dir}") from None
    except StopRequested:
        t.stopped_by = flag["signal"]
        if t.proc.main:
            t.console.print(f"[yellow]stopped at step {t.step}; checkpoint saved. Continue with: "
                            f"pillars train {t.task.name} --resume {t.run_dir}[/]")
        return "interrupted"
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def finish_unless_stopped(t: Trainer, status: str, baselines: bool, whole_final_eval: bool) -> dict:
    """finish(); a Ctrl-C or SIGTERM during its evaluations stops the run there, its last checkpoint (the
    last step's) kept, saying how to finish it: the summary of an interrupted run."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return finish(t, status, baselines, whole_final_eval)
    except KeyboardInterrupt as e:
        t.stopped_by = e.args[0] if e.args else signal.SIGINT
        if t.proc.main:
            kept = checkpoints(t.run_dir)
            t.console.print(f"[yellow]stopped during the final evaluation at step {t.step}; the last checkpoint "
                            f"({kept[-1].name if kept else 'none yet'}) is kept. Finish the run with: pillars train "
                            f"--resume {t.run_dir}[/]")
        return finish(t, "interrupted", False, False)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def finish(t: Trainer, status: str, baselines: bool, whole_final_eval: bool) -> dict:
    """The last validation figures, the one reading of the test set, the weights and summary.json."""
    test: dict = {}
    if status == "finished":
        t.valid = evaluate(t, "valid")
        test = evaluate(t, "test", whole=whole_final_eval)
    train_s, tps, n = max(t.train_seconds(), 1e-9), t.job.tokens_per_sample, t.step * t.cfg["batch_size"]
    summary = {"task": t.task.name, "status": status, "steps": t.step,
               "epochs": round(t.step / t.steps_per_epoch, 3), "metric": t.metric if t.metric in test else "loss",
               "final": test, "valid": t.valid, "best": t.best, "best_step": t.best_step,
               "wall_time_s": round(t.elapsed_before + time.time() - t.t0, 1), "train_time_s": round(train_s, 1),
               "samples_per_s": round(n / train_s, 1), **({"tokens_per_s": round(n * tps / train_s, 1)} if tps else {}),
               "parameters": sum(p.numel() for p in t.raw_model.parameters()), "device": str(t.device),
               "processes": t.world, "precision": resolve_precision(t.cfg["precision"], t.device),
               "torch": torch.__version__, "machine": machine_name(),
               **({"signal": int(t.stopped_by)} if t.stopped_by else {})}
    if not t.proc.main or status != "finished":
        return summary
    with written(t.run_dir / "model.safetensors"):
        save_weights(t.final_model, t.run_dir / "model.safetensors", {"task": t.task.name, "step": str(t.step)})
    if baselines and t.job.baselines is not None:
        summary["baselines"] = t.job.baselines()
        if summary["baselines"]:
            t.console.print("baselines on the same test set: " + figures_text(summary["baselines"]))
    with written(t.run_dir / "summary.json"):
        write_text_atomic(t.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    speed = f"{summary['tokens_per_s']:,.0f} tokens/s" if tps else f"{summary['samples_per_s']:,.0f} samples/s"
    t.console.print(f"[bold green]done[/]: test {summary['metric']} {test.get(summary['metric'], float('nan')):.4f} "
                    f"after {t.step} steps in {summary['wall_time_s']:.0f} s ({speed}) -> {t.run_dir}")
    return summary


FIXES = {os.strerror(errno.ENOSPC): "Free some space on the disk of {}", os.strerror(errno.EROFS): "Make {} writable"}


def what_is_kept(t: Trainer, reason: str) -> str:
    """After a failed write: what the run keeps, and the command that continues it once it can write."""
    fix = FIXES.get(reason, "Make sure {} can be written").format(t.run_dir)
    if not (t.run_dir / "config.toml").exists():
        return f"Nothing of the run was kept. {fix}, then start it again"
    kept = checkpoints(t.run_dir)
    where = (f"The last good checkpoint, step {step_of(kept[-1])}, is kept ({kept[-1]})" if kept
             else "No checkpoint was written yet (the run will start over)")
    return f"{where}. {fix}, then continue with: pillars train --resume {t.run_dir}"


def fit(task_name: str, cfg: dict, run_dir: Path, resume: bool = False, progress: bool = True,
        console=None, baselines: bool = True, on_step: Callable | None = None, whole_final_eval: bool = True,
        single_process: bool = False, needs: dict | None = None) -> dict:
    """Train `task_name` with the resolved config `cfg` into `run_dir`; returns the summary. With
    `baselines`, the task's non-neural baselines are computed on the same test set at the end.
    `on_step(step, total, info)` is called after every optimizer step (a caller's own progress display).
    The test evaluation reads the whole test set unless `whole_final_eval` is false (a dry run).
    `single_process` trains in this process alone even under torchrun (a run that another needs first).
    `needs` are the loaders of the runs the task requires (see pillars.runs, which trains them first)."""
    t = build_trainer(task_name, cfg, Path(run_dir), console or default_console(), single_process, needs)
    if resume:
        done = restore(t)
        if done is not None:
            return done
    try:
        prepare(t, resume)
        status = run_steps(t, progress, on_step)
        return finish_unless_stopped(t, status, baselines, whole_final_eval)
    except WriteError as e:
        raise WriteError(f"{e}. {what_is_kept(t, e.reason)}", e.reason) from None
    finally:
        if t.log is not None:
            t.log.close()
