"""Run folders that cannot collide, and runs that stop with a status that says so: a second writer is
refused with the holder's pid, `--out` never writes among a user's files, SIGTERM exits 143 after its
checkpoint, and a run that died before its first checkpoint is continued by the command it printed."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, pillars, sets
from pillars import runs, train
from pillars.config import ConfigError

SLOW = ("max_steps=5000", "checkpoint_every=5", "eval_every=5000", "log_every=1")   # stopped long before the end


def start(run: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pillars", "train", "fashion-cnn", "--out", str(run),
                             "--no-progress", *sets(*TINY, *extra)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"training ended early: {proc.stderr.read()[-2000:]}"
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_a_second_writer_is_refused_and_sigterm_exits_143_after_its_checkpoint(tmp_path, fashion):
    run = tmp_path / "run"
    first = start(run, *SLOW)
    try:
        wait_for(run / "checkpoints" / f"step-{5:08d}", first)
        config_before = (run / "config.toml").read_text()
        # a second `train --out` into the live folder, and a `--resume` of the live run: both refused
        second = pillars("train", "fashion-cnn", "--out", str(run), "--no-progress", *sets(*TINY), check=False)
        assert second.returncode == 2 and "already holds a run" in second.stderr
        again = pillars("train", "--resume", str(run), "--no-progress", check=False)
        assert again.returncode == 2 and f"pid {first.pid}" in again.stderr, again.stderr
        assert (run / "config.toml").read_text() == config_before
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err   # 128 + SIGTERM, after saving
    stopped_at = int(err.split("stopped at step ")[1].split(";")[0])
    assert train.checkpoints(run)[-1].name == f"step-{stopped_at:08d}"
    # the lock ended with its process: the run continues
    done = pillars("train", "--resume", str(run), "--no-progress", "--set", "max_steps=" + str(stopped_at + 2))
    assert done.returncode == 0 and runs.is_finished(run)


def test_the_lock_refuses_a_second_holder_and_names_it(tmp_path):
    with runs.writing(tmp_path / "r"):
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            with runs.writing(tmp_path / "r"):
                pass
    with runs.writing(tmp_path / "r"):   # released at the end of the block
        pass


def test_a_run_needed_first_waits_for_the_process_that_trains_it(tmp_path):
    """Two processes that need the same classifier (two GAN runs, two test workers): the second waits for
    the first's lock instead of training it again or being refused."""
    order = []
    with runs.writing(tmp_path / "clf"):
        waiter = threading.Thread(target=lambda: (runs.writing(tmp_path / "clf", wait=True).__enter__(),
                                                  order.append("second")))
        waiter.start()
        time.sleep(0.5)
        order.append("first")
    waiter.join(timeout=10)
    assert order == ["first", "second"]


def test_out_never_writes_among_a_users_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.jsonl").write_text("my own notes\n")
    (mine / "model.safetensors").write_bytes(b"my own weights")
    r = pillars("train", "fashion-cnn", "--out", str(mine), "--no-progress", *sets(*TINY, "max_steps=1"), check=False)
    assert r.returncode == 2 and "not a pillars run" in r.stderr and "metrics.jsonl" in r.stderr
    assert (mine / "metrics.jsonl").read_text() == "my own notes\n"
    assert (mine / "model.safetensors").read_bytes() == b"my own weights"
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.jsonl", "model.safetensors"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    r = pillars("train", "fashion-cnn", "--out", str(a_file), "--no-progress", check=False)
    assert r.returncode == 2 and "is a file" in r.stderr and a_file.read_text() == "x"


def test_a_run_killed_before_its_first_checkpoint_is_continued_by_resume(tmp_path, fashion):
    """No circle between "continue with --resume" and "start again without --resume": --resume of a run
    that has a config.toml but no checkpoint trains it from the start with its saved configuration."""
    run = tmp_path / "early"
    proc = start(run, "max_steps=5000", "checkpoint_every=5000", "eval_every=5000", "log_every=1")
    try:
        wait_for(run / "metrics.jsonl", proc)
        while "train" not in (run / "metrics.jsonl").read_text():
            assert proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate()
    assert not train.checkpoints(run)
    out = pillars("train", "fashion-cnn", "--out", str(run), "--no-progress", check=False)
    assert out.returncode == 2 and f"--resume {run}" in out.stderr
    r = pillars("train", "--resume", str(run), "--no-progress", "--set", "max_steps=3")
    assert "has no checkpoint to continue from" in r.stderr and runs.is_finished(run)
    assert (run / "metrics-earlier-1.jsonl").is_file()   # the killed start's log, kept aside
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(line["step"] for line in lines) == 3   # a new log: nothing of the killed start's steps
