"""The one training loop that every task shares.

    pillars train TASK            # one process
    torchrun --nproc_per_node=N -m pillars train TASK   # DistributedDataParallel

The loop knows nothing of a model family: a task hands it a `Job` (model, data, objective, metric).
It does mixed precision, torch.compile, gradient accumulation and clipping, warmup + cosine decay,
evaluation, logs (metrics.jsonl, TensorBoard), atomic checkpoints and exact resume.

Exact resume: the batch of step k is a pure function of (seed, k), the learning rate is a function of k,
and a checkpoint holds the weights, the optimizer, the grad scaler and every RNG state. A run killed at
any point and resumed from its last checkpoint therefore ends, on the CPU, with bitwise the same weights.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.distributed as dist
import torch.nn as nn

from pillars import tasks
from pillars.config import ConfigError, apply_overrides, defaults_of, read_toml, write_text_atomic, write_toml
from pillars.data.batches import eval_batches
from pillars.data.registry import DataError
from pillars.plots import save_image_grid


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int = 0            # stop after this many optimizer steps (0: run `epochs`)
    batch_size: int = 128         # global batch per optimizer step, over all processes and micro-batches
    accum_steps: int = 1          # micro-batches per optimizer step (gradient accumulation)
    optimizer: str = "adamw"      # adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9         # sgd only (Nesterov)
    betas: str = "0.9,0.999"      # adamw only
    weight_decay: float = 0.0
    schedule: str = "cosine"      # cosine | constant (both after linear warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0     # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 0.0        # max global gradient norm (0: off)
    ema: float = 0.0              # decay of an exponential moving average of the weights, which is then what is
                                  # evaluated, sampled from and saved (0: off; 0.999 averages ~1,000 steps)
    eval_every: int = 0           # in optimizer steps (0: once an epoch); always at the end too
    eval_batches: int = 0         # evaluate on this many batches only (0: the whole test set)
    eval_batch_size: int = 1000
    checkpoint_every: int = 0     # in optimizer steps (0: at every evaluation); always at the end too
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | mps
    precision: str = "32"         # 32 | bf16 | 16 (autocast; a grad scaler for 16 only)
    compile: bool = False
    channels_last: bool = True    # for conv nets
    sync_bn: bool = False         # SyncBatchNorm under DDP (GPUs)


def default_config(task: tasks.Task) -> dict:
    cfg = defaults_of(TrainConfig)
    options = defaults_of(task.options)
    clash = set(cfg) & set(options)
    if clash:
        raise ValueError(f"task {task.name} redefines training keys {sorted(clash)}")
    return apply_overrides({**cfg, **options}, task.defaults, f"task {task.name}")


def resolve_config(task_name: str, config_file: str | None = None, overrides: dict | None = None) -> dict:
    """TrainConfig defaults <- the task's defaults <- a TOML file <- `overrides` (from --set and flags)."""
    task = tasks.get(task_name)
    cfg = default_config(task)
    if config_file:
        file_cfg = read_toml(config_file)
        file_cfg.pop("task", None)
        cfg = apply_overrides(cfg, file_cfg, config_file)
    cfg = apply_overrides(cfg, overrides or {}, "the command line")
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    choices = {"optimizer": ("adamw", "sgd"), "schedule": ("cosine", "constant"),
               "device": ("auto", "cpu", "cuda", "mps"), "precision": ("32", "bf16", "16")}
    for key, valid in choices.items():
        if cfg[key] not in valid:
            raise ConfigError(f"{key} must be one of {', '.join(valid)}, not {cfg[key]!r}")
    at_least_one = {"batch_size", "accum_steps", "keep_checkpoints", "log_every", "eval_batch_size", "stages",
                    "blocks", "width", "hidden", "image_size", "labels_per_class", "context", "embed", "layers",
                    "heads", "vocab_size", "history", "horizon", "test_sequences", "max_words"}
    for key, value in cfg.items():   # no key of the project takes a negative number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = 1 if key in at_least_one else 0
            if value < low:
                raise ConfigError(f"{key} must be at least {low}, not {value}")
    for key in ("erase", "dropout"):   # probabilities (the tasks check their own fractions)
        if key in cfg and cfg[key] > 1:
            raise ConfigError(f"{key} must be between 0 and 1, not {cfg[key]}")
    if cfg["ema"] >= 1:
        raise ConfigError(f"ema is a decay per step and must be below 1 (0.999 is typical; 0 turns it off), "
                          f"not {cfg['ema']}")
    if cfg["epochs"] <= 0 and cfg["max_steps"] <= 0:
        raise ConfigError("set epochs or max_steps to a positive number")


# ----------------------------------------------------------------------------- devices and processes

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


@dataclass
class Proc:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_process(device_name: str) -> Proc:
    """Join the process group when started by torchrun (gloo on the CPU, nccl on GPUs)."""
    if dist.is_initialized():
        return Proc(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if "RANK" not in os.environ:
        return Proc()
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return Proc(rank, world, local)


def check_in_step(model: nn.Module, step: int) -> None:
    """Under torchrun every process must hold the same weights (DistributedDataParallel averages the
    gradients, and all start from rank 0's): compares a checksum of the parameters across processes."""
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    high, low = total.clone(), total.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if high.item() != low.item():
        raise RuntimeError(f"the processes' weights differ at step {step} (checksums {low.item()!r} to "
                           f"{high.item()!r}): a gradient was not averaged over the processes")


def all_reduce_sums(sums: dict[str, torch.Tensor], proc: Proc) -> dict:
    """Sums over every process: floats for scalar sums, float64 arrays for vector and matrix ones
    (feature moments for the Frechet distance, class histograms)."""
    keys = sorted(sums)
    # float64 on the device for nccl; in one process on the CPU (Apple's MPS has no float64)
    parts = [(sums[k].detach() if proc.world > 1 else sums[k].detach().cpu()).double().reshape(-1) for k in keys]
    vec = torch.cat(parts)
    if proc.world > 1:
        dist.all_reduce(vec)
    out, i = {}, 0
    for k, part in zip(keys, parts):
        v = vec[i:i + len(part)].cpu()
        i += len(part)
        out[k] = v.item() if sums[k].dim() == 0 else v.reshape(sums[k].shape).numpy()
    return out


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


# ----------------------------------------------------------------------------- optimisation

def make_optimizer(model: nn.Module, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and conv kernels only, not on biases and norm parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    try:
        betas = tuple(float(b) for b in cfg["betas"].split(","))
        assert len(betas) == 2
    except (ValueError, AssertionError):
        raise ConfigError(f"betas takes two numbers such as 0.9,0.999, not {cfg['betas']!r}") from None
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=betas, fused=device.type == "cuda")


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to lr * min_lr_ratio (or constant)."""
    base, warm = cfg["lr"], cfg["warmup_steps"]
    if step < warm:
        return base * (step + 1) / warm
    if cfg["schedule"] == "constant":
        return base
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = base * cfg["min_lr_ratio"]
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast(device: torch.device, precision: str):
    if precision == "32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# ----------------------------------------------------------------------------- run folders and checkpoints

def new_run_dir(base: Path, name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3 ... : an earlier run is never overwritten."""
    path, k = base / name, 1
    while path.exists():
        k += 1
        path = base / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


def save_weights(model: nn.Module, path: Path, metadata: dict | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(_dedupe_shared(state), str(tmp), metadata=metadata)
    os.replace(tmp, path)


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
    return sorted((run_dir / "checkpoints").glob("step-*"))


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


def _step_of(line: str) -> float:
    """The step of a metrics.jsonl line; a line cut short by a kill counts as past any checkpoint."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class MetricsLog:
    """metrics.jsonl and TensorBoard, written by the main process only."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():   # drop what a killed run logged past its checkpoint
            kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        elif resume_step is None and self.path.exists():   # a fresh start in a folder a killed run left behind
            self.path.unlink()
        self.tb = SummaryWriter(str(run_dir), purge_step=resume_step + 1 if resume_step is not None else None)

    def write(self, step: int, split: str, values: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        self.tb.close()


# ----------------------------------------------------------------------------- the loop

class NonFiniteLoss(RuntimeError):
    pass


class StopRequested(Exception):
    pass


def evaluate_job(job: tasks.Job, model: nn.Module, cfg: dict, device: torch.device, proc: Proc) -> dict:
    was_training = model.training
    model.eval()
    total: dict[str, torch.Tensor] = {}
    with torch.no_grad(), autocast(device, cfg["precision"]):
        for batch in eval_batches(job.test, cfg["eval_batch_size"], proc.rank, proc.world, cfg["eval_batches"]):
            if job.conv and cfg["channels_last"]:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
            for k, v in job.eval_sums(model, batch).items():
                total[k] = total[k] + v if k in total else v
    model.train(was_training)
    return job.summary(all_reduce_sums(total, proc))


def _stop_on_signals():
    """First Ctrl-C (or SIGTERM) asks the loop to checkpoint and stop after the current step; a second
    one interrupts at once."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return flag, previous


def fit(task_name: str, cfg: dict, run_dir: Path, resume: bool = False, progress: bool = True,
        console=None, baselines: bool = True, on_step=None, whole_final_eval: bool = True,
        single_process: bool = False) -> dict:
    """Train `task_name` with the resolved config `cfg` into `run_dir`; returns the summary. With
    `baselines`, the task's non-neural baselines are computed on the same test set at the end.
    `on_step(step, total, info)` is called after every optimizer step (a caller's own progress display).
    The final evaluation reads the whole test set unless `whole_final_eval` is false (a dry run).
    `single_process` trains in this process alone even under torchrun (a model that one process of a
    distributed run needs first, such as the GAN metrics' classifier)."""
    from rich.console import Console
    console = console or Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 120)
    task = tasks.get(task_name)
    proc = Proc() if single_process else init_process(cfg["device"])
    device = resolve_device(cfg["device"], proc.local_rank)
    accum, world = cfg["accum_steps"], proc.world
    if cfg["batch_size"] % (world * accum):
        raise ConfigError(f"batch_size {cfg['batch_size']} must divide evenly over {world} processes x "
                          f"{accum} accumulation steps")
    if cfg["precision"] == "16" and device.type == "cpu":
        console.print("[yellow]fp16 autocast on the CPU is slow and rarely supported well; bf16 is the CPU's "
                      "half precision[/]")

    seed_everything(cfg["seed"])
    if world > 1 and not proc.main:   # the main process fills an empty data cache first, the others then read it
        dist.barrier()
    job = task.build(cfg, device)
    if world > 1 and proc.main:
        dist.barrier()
    model = job.model.to(device)
    conv_last = job.conv and cfg["channels_last"]
    if conv_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and cfg["sync_bn"]:
        if device.type == "cpu":
            raise ConfigError("sync_bn needs GPUs (SyncBatchNorm does not run on the CPU); drop --set sync_bn=true")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, cfg, device)
    ema = None
    if cfg["ema"] > 0:   # W_ema <- decay * W_ema + (1 - decay) * W after every step; buffers (BatchNorm) too
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg["ema"]), use_buffers=True)
        ema.requires_grad_(False)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg["precision"] == "16")
    steps_per_epoch = job.train.steps_per_epoch
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * steps_per_epoch))
    eval_every = cfg["eval_every"] or steps_per_epoch
    ckpt_every = cfg["checkpoint_every"] or eval_every
    seed_everything(cfg["seed"] + proc.rank)   # data order is seeded apart; this drives dropout etc.

    step, best, elapsed_before, train_before, overhead = 0, None, 0.0, 0.0, 0.0
    if resume:
        found = checkpoints(run_dir)
        if not found:
            raise ConfigError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
        last = found[-1]
        load_weights(model, last / "model.safetensors")
        state = torch.load(last / "state.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, best, elapsed_before = state["step"], state["best"], state["elapsed"]
        train_before = state["train_time"]
        if ema is not None and (last / "ema.safetensors").exists():
            load_weights(ema.module, last / "ema.safetensors")
            ema.n_averaged.fill_(state["ema_updates"])
        elif ema is not None and proc.main:
            console.print(f"{last} holds no moving average (the run was trained without ema): it starts "
                          "from the current weights")
        rngs = state["rng"]
        set_rng_state(rngs[proc.rank] if len(rngs) == world else rngs[0])
        if step >= total and (run_dir / "summary.json").exists():
            if proc.main:
                console.print(f"{run_dir} already finished at step {step}; raise --max-steps or --epochs "
                              "to train it further")
            return json.loads((run_dir / "summary.json").read_text())
        for stale in (run_dir / "checkpoints").glob(".tmp-*"):   # a checkpoint write that was cut off
            shutil.rmtree(stale, ignore_errors=True)
        if proc.main:
            console.print(f"resuming {run_dir} from step {step}")

    raw_model = model
    if cfg["compile"]:
        model = torch.compile(model)
    # evaluation needs no gradient averaging, and a task's eval_sums may reach into the model
    eval_model = ema.module if ema is not None else model
    final_model = ema.module if ema is not None else raw_model   # what is sampled from and saved as the run's
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    log = MetricsLog(run_dir, step if resume else None) if proc.main else None
    n_params = sum(p.numel() for p in raw_model.parameters())
    if proc.main:
        write_toml(run_dir / "config.toml", {"task": task_name, **cfg})
        if job.tokenizer is not None:
            job.tokenizer.save(run_dir / "tokenizer.json")
        if job.inputs is not None:   # what predict needs to turn a photo into an input, without the data
            write_text_atomic(run_dir / "inputs.json", json.dumps(dataclasses.asdict(job.inputs), indent=2) + "\n")
        console.print(f"[bold]{task_name}[/]: {task.description}\n  {n_params:,} parameters, {len(job.train):,} "
                      f"training examples, {total} steps of {cfg['batch_size']} on {device} x{world}, "
                      f"precision {cfg['precision']} -> {run_dir}")

    def checkpoint(at: int) -> None:
        state = {"step": at, "best": best, "elapsed": elapsed_before + time.time() - t0,
                 "train_time": train_seconds(),
                 "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state()}
        if ema is not None:
            state["ema_updates"] = int(ema.n_averaged)
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, state["rng"])
            state["rng"] = rngs
        else:
            state["rng"] = [state["rng"]]
        if not all(torch.isfinite(p).all() for p in raw_model.parameters()):
            raise NonFiniteLoss(f"the weights became non-finite at step {at}")
        if world > 1:
            check_in_step(raw_model, at)
        if proc.main:
            save_checkpoint(run_dir, at, raw_model, state, cfg["keep_checkpoints"],
                            ema.module if ema is not None else None)
        if world > 1:
            dist.barrier()

    def train_seconds() -> float:
        """Wall time spent training so far, without evaluations and checkpoints."""
        return train_before + time.time() - t0 - overhead

    def run_eval(at: int) -> dict:
        nonlocal best
        # the final evaluation reads the whole test set, as the baselines do; eval_batches only shortens the others
        final = at >= total and whole_final_eval
        result = evaluate_job(job, eval_model, {**cfg, "eval_batches": 0} if final else cfg, device, proc)
        result["train_time_s"] = round(train_seconds(), 2)
        score = result[metric if metric in result else "loss"]
        if best is None or (score > best if task.higher_is_better else score < best):
            best = score
        if proc.main and job.images is not None:   # e.g. a GAN's samples from a fixed noise batch
            grid = job.images(final_model)
            save_image_grid(grid, run_dir / "samples" / f"step-{at:06d}.png")
            log.tb.add_image("samples", grid, at)
        if proc.main:
            log.write(at, "test", result)
            console.print(f"step {at}/{total} (epoch {at / steps_per_epoch:.2f}): "
                          + "  ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "train_time_s"))
        return result

    metric = task.metric   # the task's figure; "loss" where the configuration cannot report it
    flag, previous = _stop_on_signals()
    bar = _progress(console, enabled=progress and proc.main)
    tid = bar.add_task(task_name, total=total, completed=step, info="")
    t0 = time.time()
    samples, t_window, loss_window, extras, info = 0, time.time(), [], {}, ""
    tps = job.tokens_per_sample
    result: dict = {}
    status = "finished"
    model.train()
    try:
        with bar:
            while step < total:
                lr = lr_at(step, total, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = job.train.batch(step, proc.rank, world)
                micro = list(zip(*(t.chunk(accum) for t in batch)))
                step_loss = torch.zeros((), device=device)
                for j, mb in enumerate(micro):
                    if conv_last:
                        mb = (mb[0].contiguous(memory_format=torch.channels_last), *mb[1:])
                    sync = world == 1 or j == accum - 1
                    with (nullcontext() if sync else model.no_sync()), autocast(device, cfg["precision"]):
                        loss = job.loss(model, mb)
                    if isinstance(loss, tuple):   # (loss, figures to log), e.g. a GAN's two losses
                        loss, extra = loss
                        for k, v in extra.items():
                            extras.setdefault(k, []).append(v.detach().float() / accum)
                    loss = loss / accum
                    scaler.scale(loss).backward()
                    step_loss += loss.detach()
                if cfg["grad_clip"] > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(raw_model.parameters(), cfg["grad_clip"])
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(raw_model)
                step += 1
                samples += cfg["batch_size"]
                loss_window.append(step_loss)

                log_now = step % cfg["log_every"] == 0
                stop = flag["stop"]
                if world > 1 and log_now:   # every process must stop at the same step
                    stop_vec = torch.tensor([float(stop)], device=device)
                    dist.all_reduce(stop_vec, op=dist.ReduceOp.MAX)
                    stop = bool(stop_vec.item())
                elif world > 1:
                    stop = False
                due_eval = step % eval_every == 0 or step == total
                due_ckpt = step % ckpt_every == 0 or step == total or stop
                if log_now or due_eval or due_ckpt:
                    mean_loss = torch.stack(loss_window).mean()
                    if world > 1:
                        dist.all_reduce(mean_loss)
                        mean_loss /= world
                    mean_loss = mean_loss.item()
                    if not math.isfinite(mean_loss):
                        raise NonFiniteLoss(f"the training loss became {mean_loss} at step {step}")
                    rate = samples / (time.time() - t_window)
                    logged = {k: torch.stack(v).sum().item() / (len(v) // accum) for k, v in extras.items()}
                    if proc.main:
                        log.write(step, "train", {"loss": mean_loss, **logged, "lr": lr, "samples_per_s": rate,
                                                  **({"tokens_per_s": rate * tps} if tps else {})})
                        speed = f"{rate * tps:,.0f} tokens/s" if tps else f"{rate:,.0f} samples/s"
                        info = f"loss {mean_loss:.4f}  lr {lr:.2e}  {speed}"
                        bar.update(tid, info=info)
                    samples, t_window, loss_window, extras = 0, time.time(), [], {}
                bar.update(tid, completed=step)
                if on_step is not None:
                    on_step(step, total, info)
                paused = time.time()
                if due_eval:
                    result = run_eval(step)
                if due_ckpt:
                    checkpoint(step)
                if due_eval or due_ckpt:
                    overhead += time.time() - paused
                    t_window = time.time()
                if stop and step < total:
                    raise StopRequested
        if not result and step >= total:   # killed after its last checkpoint, before its summary
            result = run_eval(step)
    except NonFiniteLoss as e:
        kept = checkpoints(run_dir)
        raise NonFiniteLoss(f"{e}; the run stopped. The last good checkpoint is "
                            f"{kept[-1] if kept else '(none yet)'}: lower --lr, set grad_clip, or use "
                            f"--precision 32, then continue with --resume {run_dir}") from None
    except StopRequested:
        status = "interrupted"
        if proc.main:
            console.print(f"[yellow]stopped at step {step}; checkpoint saved. Continue with: "
                          f"pillars train {task_name} --resume {run_dir}[/]")
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if log:
            log.close()

    wall = elapsed_before + time.time() - t0
    summary = {"task": task_name, "status": status, "steps": step, "epochs": round(step / steps_per_epoch, 3),
               "metric": metric if metric in result else "loss", "final": result, "best": best,
               "wall_time_s": round(wall, 1),
               "train_time_s": round(train_seconds(), 1),
               "samples_per_s": round(step * cfg["batch_size"] / max(train_seconds(), 1e-9), 1),
               **({"tokens_per_s": round(step * cfg["batch_size"] * tps / max(train_seconds(), 1e-9), 1)}
                  if tps else {}),
               "parameters": n_params, "device": str(device), "processes": world,
               "precision": cfg["precision"], "torch": torch.__version__, "machine": machine_name()}
    if proc.main and status == "finished":
        save_weights(final_model, run_dir / "model.safetensors", {"task": task_name, "step": str(step)})
        if baselines and job.baselines is not None:
            summary["baselines"] = job.baselines()
            if summary["baselines"]:
                console.print("baselines on the same test set: "
                              + "  ".join(f"{k} {v:.4f}" for k, v in summary["baselines"].items()))
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        console.print(f"[bold green]done[/]: {summary['metric']} {result.get(summary['metric'], float('nan')):.4f} "
                      f"after {step} steps in {wall:.0f} s ("
                      + (f"{summary['tokens_per_s']:,.0f} tokens/s" if tps
                         else f"{summary['samples_per_s']:,.0f} samples/s")
                      + f") -> {run_dir}")
    return summary


def _progress(console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, disable=not enabled, transient=False)


def machine_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


# ----------------------------------------------------------------------------- runs after training

def weights_path(run_dir: Path) -> Path:
    """A run's final weights, or its last checkpoint's while it is training (the moving average, if any)."""
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        found = checkpoints(run_dir)
        if not found:
            raise ConfigError(f"{run_dir} has no weights yet (no model.safetensors and no checkpoint)")
        weights = found[-1] / "ema.safetensors"
        if not weights.exists():
            weights = found[-1] / "model.safetensors"
    return weights


def saved_config(run_dir: Path) -> tuple[str, dict]:
    """The task and whole configuration a run folder was trained with (its config.toml over the defaults)."""
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run folder (it has no config.toml)")
    saved = read_toml(path)
    task_name = saved.pop("task", None)
    if task_name is None:
        raise ConfigError(f"{path} names no task; it was not written by pillars train")
    return task_name, apply_overrides(default_config(tasks.get(task_name)), saved, str(path))


# where a run trains is not what it is: a run may continue on another device
_WHERE = {"device"}


def settings_changed(run_dir: Path, task_name: str, cfg: dict) -> str:
    """"" when `run_dir` was trained as `task_name` with `cfg` (the device aside), else what differs."""
    saved_task, saved = saved_config(run_dir)
    if saved_task != task_name:
        return f"task {saved_task} -> {task_name}"
    return ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" for k, v in sorted(cfg.items())
                     if k not in _WHERE and saved.get(k) != v)


def load_run(run_dir: Path, device_name: str = "auto",
             overrides: dict | None = None) -> tuple[str, dict, tasks.Job, torch.device]:
    """Rebuild a finished (or checkpointed) run's job with its trained weights; `overrides` change keys
    that act at evaluation (a translation's beam, test-time flips), not the model's shape."""
    run_dir = Path(run_dir)
    task_name, cfg = saved_config(run_dir)
    cfg = apply_overrides(cfg, overrides or {}, "the command line")
    device = resolve_device(device_name)
    job = tasks.get(task_name).build(cfg, device)
    job.model.to(device)
    weights = weights_path(run_dir)
    try:
        load_weights(job.model, weights)
    except (RuntimeError, ValueError):
        if not overrides:
            raise
        raise ConfigError(f"the weights of {run_dir} do not fit the model built with {overrides}: only keys "
                          "that act at evaluation (such as beam or tta_flip) can be changed") from None
    saved_tok = run_dir / "tokenizer.json"
    if job.tokenizer is not None and saved_tok.exists():
        from pillars.data import tokenizers
        if tokenizers.load(saved_tok).to_json() != job.tokenizer.to_json():
            raise ConfigError(f"the training text of {run_dir} has changed since it was trained: its vocabulary "
                              f"differs from {saved_tok}. Restore the text it was trained on, or train again")
    return task_name, cfg, job, device


def load_classifier(run_dir: Path, device_name: str = "cpu") -> tuple[nn.Module, "tasks.ImageInputs", torch.device]:
    """An image run's trained model and its inputs (channels, size, normalisation, classes). A task with a
    `predictor` rebuilds the model from the run's inputs.json without reading its training images (a
    user's folder may have moved); the others rebuild the whole job."""
    run_dir = Path(run_dir)
    task_name, cfg = saved_config(run_dir)
    task = tasks.get(task_name)
    if task.predictor is not None and (run_dir / "inputs.json").exists():
        try:
            inputs = tasks.ImageInputs(**json.loads((run_dir / "inputs.json").read_text()))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{run_dir / 'inputs.json'} is damaged ({e}); it is written by pillars train "
                              "and should not be edited. Train the run again") from None
        device = resolve_device(device_name)
        model = task.predictor(cfg, inputs).to(device)
        load_weights(model, weights_path(run_dir))
        return model, inputs, device
    try:
        _, _, job, device = load_run(run_dir, device_name)
    except DataError as e:
        if task.predictor is None:
            raise
        raise DataError(f"{run_dir} was trained before runs kept their inputs.json, so its training data is read "
                        f"again to rebuild it, and that failed: {e}") from None
    if job.inputs is None:
        raise ConfigError(f"{run_dir} is not an image classifier; predict takes runs of image tasks")
    return job.model, job.inputs, device


def evaluate_run(run_dir: Path, device_name: str = "auto", overrides: dict | None = None) -> dict:
    task_name, cfg, job, device = load_run(run_dir, device_name, overrides)
    cfg = {**cfg, "eval_batches": 0}
    if job.conv and cfg["channels_last"]:
        job.model.to(memory_format=torch.channels_last)
    return evaluate_job(job, job.model, cfg, device, Proc())

