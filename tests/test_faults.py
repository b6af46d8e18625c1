"""Faults with clear outcomes. A full disk, or a folder become read-only, stops a run with exit status 2 and
one line that names the file, the operating system's reason, the last good checkpoint and the command that
continues the run, which then ends with the weights of an uninterrupted run. A damaged latest checkpoint is
set aside and the run resumes from the one before, with a warning. A read-only PILLARS_HOME costs a run its
caches, not its end. Real faults (a small tmpfs, read-only bind mounts) run in a private mount namespace
(`unshare -m`) where this machine allows one; every case is also raised in this process, from the write
itself, so that the logic is tested everywhere."""
import errno
import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import SafetensorError

from tests.conftest import ROOT, pillars, sets
from pillars import data, train
from pillars.data import registry
from pillars.train import log as run_log, loop
from pillars.weights import load_tensors

checkpoint_files = importlib.import_module("pillars.train.checkpoints")   # pillars.train.checkpoints is a function
RUN = ["--max-steps", "6", "--no-progress", *sets("checkpoint_every=2", "keep_checkpoints=3")]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_tensors(a / "model.safetensors")[0], load_tensors(b / "model.safetensors")[0]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def steps_in_tensorboard(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def the_error(stderr: str) -> str:
    """The one `error:` line, after making sure there is one and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """digits-cnn, 6 steps, a checkpoint every 2 (all three kept), uninterrupted."""
    run = tmp_path_factory.mktemp("faults") / "reference"
    pillars("train", "digits-cnn", "--out", str(run), *RUN)
    return run


def failing(real, reason: int = errno.ENOSPC, after: int = 0, only: str = ""):
    """`real`, whose calls on a path whose name starts with `only` fail from call `after` + 1 on with the
    OSError of `reason`, as on a full disk or a read-only folder, leaving a half-written temporary file
    beside the target as an atomic write would."""
    calls = []

    def fake(*args, **kwargs):
        path = next(Path(a) for a in args if isinstance(a, (str, Path)))
        if path.name.startswith(only):
            calls.append(path)
            if len(calls) > after:
                if path.parent.is_dir():
                    path.with_name(f".{path.name}.tmp{os.getpid()}").write_text("half")
                raise OSError(reason, os.strerror(reason), str(path))
        return real(*args, **kwargs)
    return fake


# what fails: the module and function that write, the file, the calls that succeed first; what the message
# names; the checkpoint kept
WRITES = {
    "checkpoint": (checkpoint_files, "save_state", "state.pt", 1, "checkpoints/step-00000004", 2),
    "metrics.jsonl": (run_log, "open", "metrics.jsonl", 1, "metrics.jsonl", 2),
    "TensorBoard events": (run_log, "open", "events.out", 0, "events.out.tfevents.", None),
    "summary.json": (loop, "write_text_atomic", "summary.json", 0, "summary.json", 6),
    "final weights": (loop, "save_weights", "model.safetensors", 0, "model.safetensors", 6),
}


@pytest.mark.parametrize("what", WRITES)
def test_a_full_disk_names_the_file_keeps_the_last_checkpoint_and_the_resume_is_exact(what, tmp_path, reference,
                                                                                      monkeypatch):
    module, function, file, after, named, kept = WRITES[what]
    run = tmp_path / "run"
    real = getattr(module, function, open)
    monkeypatch.setattr(module, function, failing(real, after=after, only=file), raising=False)
    r = pillars("train", "digits-cnn", "--out", str(run), *RUN, check=False)
    monkeypatch.undo()
    error = the_error(r.stderr)
    assert r.returncode == 2 and error.startswith(f"error: cannot write {run / named}")
    assert f": {os.strerror(errno.ENOSPC)}." in error and f"then continue with: pillars train --resume {run}" in error
    assert (f"The last good checkpoint, step {kept}, is kept" if kept else "No checkpoint was written yet") in error
    assert [c.name for c in train.checkpoints(run)] == [f"step-{s:08d}" for s in range(2, (kept or 0) + 1, 2)]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]   # no temporary file or checkpoint folder left
    pillars("train", "--resume", str(run), "--no-progress")
    assert same_weights(run, reference)
    assert steps_in_tensorboard(run, "train/loss") == [2, 4, 6]   # what the failed attempt logged is dropped


def test_a_run_that_cannot_write_its_configuration_leaves_nothing_and_says_to_start_again(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(loop, "write_toml", failing(loop.write_toml, errno.EROFS))
    r = pillars("train", "digits-cnn", "--out", str(run), *RUN, check=False)
    error = the_error(r.stderr)
    assert r.returncode == 2 and f"cannot write {run / 'config.toml'}: Read-only file system" in error
    assert f"Nothing of the run was kept. Make {run} writable, then start it again" in error
    assert not run.exists()   # its temporary file removed, the command line removed the empty folder


def test_a_runs_folder_that_cannot_be_written_is_named_before_anything_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", failing(Path.mkdir, errno.EROFS, only="digits-cnn"))
    r = pillars("train", "digits-cnn", "--runs", str(tmp_path / "runs"), *RUN, check=False)
    error = the_error(r.stderr)
    assert r.returncode == 2 and f"cannot create {tmp_path / 'runs' / 'digits-cnn'}: Read-only file system" in error
    assert "with --runs or --out" in error and "parameters" not in r.stderr   # before the model was built


class RunsCode:
    """Unpickled, it creates `path`: what a poisoned state.pt would do if it were loaded unsafely."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5000])


def poison(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["hook"] = RunsCode(path.parents[2] / "code-ran")
    torch.save(state, path)


DAMAGE = {"truncated state.pt": ("state.pt", cut_short, "is cut short"),
          "truncated model.safetensors": ("model.safetensors", cut_short, "is not a whole safetensors file"),
          "poisoned state.pt": ("state.pt", poison, "holds objects other than tensors and plain values")}


def killed_copy(reference: Path, tmp_path: Path) -> Path:
    """The reference run as if it had been killed after its last checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "summary.json").unlink()
    (run / "model.safetensors").unlink()
    return run


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(damage, tmp_path,
                                                                                         reference):
    file, spoil, why = DAMAGE[damage]
    run = killed_copy(reference, tmp_path)
    latest = run / "checkpoints" / "step-00000006"
    spoil(latest / file)
    r = pillars("train", "--resume", str(run), "--no-progress")
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{latest / file} {why}" in warnings[0], r.stderr
    assert "Resuming from step 4 instead of 6" in warnings[0] and f"resuming {run} from step 4" in r.stderr
    assert "weights_only" not in r.stderr and not (run / "code-ran").exists()
    assert (run / "checkpoints" / "damaged-step-00000006" / file).exists()   # set aside, not deleted
    assert same_weights(run, reference)


def test_no_intact_checkpoint_names_each_file_and_how_to_start_over(tmp_path, reference):
    run = killed_copy(reference, tmp_path)
    for checkpoint in train.checkpoints(run):
        cut_short(checkpoint / "state.pt")
    r = pillars("train", "--resume", str(run), "--no-progress", check=False)
    error = the_error(r.stderr)
    assert r.returncode == 2 and all(f"{c / 'state.pt'} is cut short" in error for c in train.checkpoints(run))
    assert f"move {run / 'checkpoints'} aside (or delete it), then run: pillars train --resume {run}" in error
    assert len(train.checkpoints(run)) == 3   # nothing set aside when there is nothing to fall back on


def test_a_cache_that_cannot_be_written_costs_the_run_one_note(tmp_path, reference, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(data.get("digits").raw_dir, home / "raw" / "digits")   # fetched, not yet parsed
    monkeypatch.setenv("PILLARS_HOME", str(home))
    def read_only(file, arr):   # np.save into the open temporary file of each parsed array
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), getattr(file, "name", str(file)))
    monkeypatch.setattr(registry.np, "save", read_only)
    r = pillars("train", "digits-cnn", "--out", str(tmp_path / "run"), *RUN)
    assert r.stderr.count(f"note: the data cache {home} cannot be written (Read-only file system)") == 1
    assert not (home / "arrays" / "digits").exists()   # nothing half written
    assert same_weights(tmp_path / "run", reference)


def test_a_pillars_home_that_is_a_file_is_named_before_any_source_is_tried(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("PILLARS_HOME", str(home))
    r = pillars("train", "digits-cnn", "--out", str(tmp_path / "run"), *RUN, check=False)
    error = the_error(r.stderr)
    assert r.returncode == 2 and f"the cache {home} (PILLARS_HOME) is a file, not a folder" in error
    assert "set PILLARS_HOME to a writable folder" in error and "Sources tried" not in error
    assert not (tmp_path / "run").exists() and home.read_text() == "not a folder"


class Classifier(torch.nn.Module):
    def embedding(self, x):
        return x.flatten(1)[:, :8] * 2

    def classify(self, h):
        return h[:, :3]


def test_the_gan_metrics_real_features_are_measured_again_when_the_cache_cannot_keep_them(tmp_path, monkeypatch,
                                                                                          capsys):
    from pillars.tasks import generative
    folder = tmp_path / "classifier"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"its weights")
    (folder / "real-features.safetensors").write_bytes(b"a damaged cache")
    run = SimpleNamespace(run_dir=folder, job=SimpleNamespace(model=Classifier(),
                                                              inputs=SimpleNamespace(mean=[0.5], std=[0.5])))
    monkeypatch.setenv("PILLARS_HOME", str(tmp_path))

    def read_only(*args):
        raise SafetensorError("Error while serializing: I/O error: Read-only file system (os error 30)")
    monkeypatch.setattr(generative, "save_tensors", read_only)
    images = {"test": torch.rand(4, 1, 28, 28) * 2 - 1}
    first, second = generative.real_features(run, images), generative.real_features(run, images)
    assert torch.equal(first["test_features"], second["test_features"])
    assert torch.allclose(first["test_features"], Classifier().embedding(images["test"]))   # measured, not read
    assert capsys.readouterr().err.count("note: the data cache") == 1


# ----------------------------------------------------------------------------- real faults

@functools.cache
def mount_namespace() -> str:
    """"" where this process may make a private mount namespace with a tmpfs and a read-only bind mount in
    it (root, or CAP_SYS_ADMIN), else why not."""
    probe = tempfile.mkdtemp()
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe} && "
                            f"mount --bind -o ro {probe} {probe}"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return "unshare is not installed"
    finally:
        os.rmdir(probe)
    return "" if r.returncode == 0 else r.stderr.strip() or f"exit status {r.returncode}"


# Run inside `unshare -m` (mounts there are private to it), through the command line's entry point: a full
# 600 KB disk, then more space and the resume; a folder made read-only after its first checkpoint; a read-only
# --runs folder; a read-only PILLARS_HOME holding the data; a read-only empty one.
REAL = r"""
import json, os, shutil, subprocess, sys, threading, time
from pathlib import Path
from tests.conftest import in_process

root, home, run_args = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
out = {}

def mount(*args):
    subprocess.run(["mount", *args], check=True)

def train(name, *args):
    r = in_process(["train", *args])
    folder = Path(args[args.index(next(f for f in ("--out", "--resume", "--runs") if f in args)) + 1])
    out[name] = {"status": r.returncode, "stderr": r.stderr, "files": sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []}

disk = root / "disk"
disk.mkdir()
mount("-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk))
train("full", "digits-cnn", "--out", str(disk / "run"), *run_args)
mount("-o", "remount,size=8m", str(disk))
train("resumed", "--resume", str(disk / "run"), "--no-progress")
shutil.copytree(disk / "run", root / "resumed")   # the tmpfs goes with this process

def freeze(folder):
    while not (folder / "checkpoints" / "step-00000002").exists():
        time.sleep(0.01)
    mount("--bind", "-o", "ro", str(folder), str(folder))

threading.Thread(target=freeze, args=(disk / "frozen",), daemon=True).start()
train("read-only folder", "digits-cnn", "--out", str(disk / "frozen"), "--max-steps", "3000", "--no-progress",
      "--set", "checkpoint_every=2", "--set", "log_every=1")

(root / "read-only").mkdir()
mount("--bind", "-o", "ro", str(root / "read-only"), str(root / "read-only"))
train("read-only runs folder", "digits-cnn", "--runs", str(root / "read-only"), *run_args)

for name, cache in (("read-only home", home), ("read-only empty home", str(root / "empty"))):
    Path(cache).mkdir(exist_ok=True)
    mount("--bind", "-o", "ro", cache, cache)
    os.environ["PILLARS_HOME"] = cache
    train(name, "digits-cnn", "--out", str(root / name), *run_args)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    why = mount_namespace()
    if why:
        pytest.skip(f"no private mount namespace here for real full-disk and read-only faults ({why}); the "
                    "in-process tests of this file raise the same errors")
    root = tmp_path_factory.mktemp("real")
    home = root / "home"   # the data cache, with digits fetched and not yet parsed: parsing it wants to write
    shutil.copytree(data.get("digits").raw_dir, home / "raw" / "digits")
    r = subprocess.run(["unshare", "-m", sys.executable, "-c", REAL, str(root), str(home), json.dumps(RUN)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"root": root, "home": home, **json.loads(r.stdout.splitlines()[-1])}


def test_a_real_full_disk_keeps_the_last_checkpoint_and_the_run_continues_exactly_once_there_is_space(real,
                                                                                                     reference):
    run = real["root"] / "disk" / "run"   # gone with the tmpfs: what was seen inside is in `real`
    full = real["full"]
    error = the_error(full["stderr"])
    assert full["status"] == 2 and error.startswith(f"error: cannot write {run}/checkpoints/step-00000004: "
                                                    "No space left on device.")
    assert f"step 2, is kept ({run}/checkpoints/step-00000002)" in error
    assert f"Free some space on the disk of {run}, then continue with: pillars train --resume {run}" in error
    assert "checkpoints/step-00000002/state.pt" in full["files"] and not [f for f in full["files"] if ".tmp" in f]
    assert real["resumed"]["status"] == 0 and f"resuming {run} from step 2" in real["resumed"]["stderr"]
    assert same_weights(real["root"] / "resumed", reference)


def test_a_folder_made_read_only_mid_run_names_the_file_and_keeps_the_checkpoints(real):
    run, frozen = real["root"] / "disk" / "frozen", real["read-only folder"]
    error = the_error(frozen["stderr"])
    kept = [f for f in frozen["files"] if f.startswith("checkpoints/step-") and "/" not in f[12:]]
    assert frozen["status"] == 2 and error.startswith(f"error: cannot write {run}/")
    assert ": Read-only file system." in error and f"is kept ({run}/{kept[-1]})" in error
    assert f"Make {run} writable, then continue with: pillars train --resume {run}" in error
    assert {f"{kept[-1]}/model.safetensors", f"{kept[-1]}/state.pt"} <= set(frozen["files"])   # whole


def test_a_read_only_runs_folder_is_named_and_nothing_is_written(real):
    runs = real["read-only runs folder"]
    error = the_error(runs["stderr"])
    folder = real["root"] / "read-only" / "digits-cnn"
    assert runs["status"] == 2 and error.startswith(f"error: cannot create {folder}: Read-only file system. Nothing "
                                                    "was written")
    assert runs["files"] == []


def test_a_read_only_pillars_home_lets_the_run_finish_with_one_note(real, reference):
    home = real["read-only home"]
    assert home["status"] == 0, home["stderr"][-2000:]
    assert home["stderr"].count("note: the data cache") == 1 and "(Read-only file system)" in home["stderr"]
    assert same_weights(real["root"] / "read-only home", reference)
    empty = real["read-only empty home"]
    error = the_error(empty["stderr"])
    assert empty["status"] == 2 and f"the cache {real['root'] / 'empty'} (PILLARS_HOME) cannot be written " \
        "(Read-only file system)" in error
