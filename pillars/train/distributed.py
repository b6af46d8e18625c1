"""Several processes under torchrun: the process group, and the checks that keep them in step."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


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
