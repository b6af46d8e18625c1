"""Several processes through torchrun's own launcher: two processes train the same weights as one on the
same global batch; a worker killed under `--max-restarts` is restarted by torchrun's elastic agent and
the run continues from its last checkpoint to bitwise the weights of an uninterrupted run; and two
launchers joined by c10d rendezvous (two "nodes" on this machine) train those same weights too."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.conftest import ROOT, TINY, pillars, sets
from pillars import train
from pillars.weights import load_tensors

# SGD keeps float noise in the summed gradients at its own size (Adam divides by sqrt(v), which magnifies it
# where a gradient is near zero); no BatchNorm, so each process's half-batch normalises nothing on its own
COMMON = (*TINY, "max_steps=160", "checkpoint_every=20", "keep_checkpoints=8", "eval_every=1000", "batch_norm=false", "dropout=0",
          "optimizer=sgd", "lr=0.05")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list[str], run: Path, log: Path) -> subprocess.Popen:
    """torchrun with its output in `log` (a pipe would stay open while a stray worker lives)."""
    with open(log, "w") as out:
        return subprocess.Popen([*TORCHRUN, *launcher, "-m", "pillars", "train", "fashion-cnn", "--out", str(run),
                                 "--no-progress", *sets(*COMMON)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})


def workers(run: Path) -> list[int]:
    """The pids of the training processes writing `run`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pillars" in cmd and str(run).encode() in cmd and b"torch.distributed.run" not in cmd:
            found.append(int(proc.name))
    return found


def finish(proc: subprocess.Popen, run: Path, log: Path, timeout: float = 300) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    for pid in workers(run):   # none should be left; a hung one must not outlive the test
        os.kill(pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "model.safetensors")[0]


def worker_of_rank(run: Path, rank: int) -> int:
    for pid in workers(run):
        if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return pid
    raise LookupError(f"no worker of rank {rank} for {run}")


def test_two_processes_train_as_one_and_an_elastic_restart_or_two_nodes_change_nothing(tmp_path, fashion):
    single = tmp_path / "single"
    pillars("train", "fashion-cnn", "--out", str(single), "--no-progress", *sets(*COMMON))
    ref = tmp_path / "two"
    finish(launch(["--standalone", "--nproc_per_node=2"], ref, tmp_path / "two.log"), ref, tmp_path / "two.log")
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["processes"] == 2
    # one process and two on halves of the same batches: equal to float tolerance while the run is smooth
    # (after ~50 steps this small net leaves its loss plateau, where any float noise, a second thread's too,
    # grows to a different path)
    a, b = (load_tensors(train.checkpoints(r)[1] / "model.safetensors")[0] for r in (single, ref))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4)

    # a worker killed after the second checkpoint: torchrun restarts both, and they continue the run
    elastic = tmp_path / "elastic"
    log = tmp_path / "elastic.log"
    proc = launch(["--nnodes=1:2", "--nproc_per_node=2", "--max-restarts=1", "--rdzv-backend=c10d",
                   f"--rdzv-endpoint=127.0.0.1:{free_port()}",
                   "--rdzv-conf=last_call_timeout=1"], elastic, log)   # not 30 s of waiting for a second node
    t0 = time.time()
    while not (elastic / "checkpoints" / f"step-{40:08d}").exists():
        assert proc.poll() is None and time.time() - t0 < 120, log.read_text()[-3000:]
        time.sleep(0.02)
    os.kill(worker_of_rank(elastic, 1), signal.SIGKILL)
    out = finish(proc, elastic, log)
    assert "continuing it from step-" in out, out[-3000:]
    steps = [json.loads(line)["step"] for line in (elastic / "metrics.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == sorted(set(steps)) and steps[-1] == 160   # the restart's log continues, without repeats
    for k, v in weights(ref).items():   # bitwise: the restart is an exact continuation
        assert torch.equal(v, weights(elastic)[k]), k

    # two launchers of one process each, joined by c10d rendezvous: the same weights as one launcher of two
    nodes = tmp_path / "nodes"
    port = free_port()
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    both = [launch(["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                    "--rdzv-id=nodes-test"], nodes, log) for log in logs]
    for p, log in zip(both, logs):
        finish(p, nodes, log)
    assert json.loads((nodes / "summary.json").read_text())["processes"] == 2
    for k, v in weights(ref).items():
        assert torch.equal(v, weights(nodes)[k]), k
