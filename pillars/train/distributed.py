"""Several processes under torchrun: the process group, and the checks that keep them in step."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from pillars.config import ConfigError

T = TypeVar("T")


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
    backend = "nccl" if use_cuda else "gloo"
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's agent shares its rendezvous store with the workers, and a restarted group would read the
        # addresses of the group it replaces there and fail to connect (pytorch/pytorch#135712): the keys of
        # each restart go under a prefix of their own
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                              timeout=timedelta(minutes=10))
        dist.init_process_group(backend, store=dist.PrefixStore(f"pillars-restart-{restart}", store),
                                rank=rank, world_size=world)
    else:
        dist.init_process_group(backend)
    if use_cuda:
        torch.cuda.set_device(local)
    return Proc(rank, world, local)


def decided_by_main(proc: Proc, decide: Callable[[], T]) -> T:
    """What the main process decides (a run's folder, whether it continues a run), given to every process:
    on a cluster the others may not see the same files, and they must not race the main one. A bad input it
    meets stops every process with the same message."""
    if proc.world == 1:
        return decide()
    box: list = [None]
    if proc.main:
        try:
            box = [("ok", decide())]
        except ConfigError as e:
            box = [("error", str(e))]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise ConfigError(value)
    return value


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


def agree_to_stop(stop: bool, device: torch.device) -> bool:
    """True on every process when any process was asked to stop (they must stop at the same step)."""
    flag = torch.tensor([float(stop)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def mean_over_processes(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(value)
        value = value / world
    return value
