import pytest

from pillars import config, tasks, train
from tests.conftest import ROOT, pillars, sets


def test_coerce_types():
    assert config.coerce("lr", "3e-4", 1e-3) == 3e-4
    assert config.coerce("steps", "1000", 0) == 1000
    assert config.coerce("steps", "1e3", 0) == 1000
    assert config.coerce("compile", "true", False) is True
    assert config.coerce("compile", "0", True) is False
    assert config.coerce("lr", 1, 0.5) == 1.0
    with pytest.raises(config.ConfigError, match="takes an integer"):
        config.coerce("steps", "ten", 0)
    with pytest.raises(config.ConfigError, match="true or false"):
        config.coerce("compile", "maybe", False)


def test_resolution_order(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 0.5\nwidth = 16\nepochs = 2\n')
    cfg = train.resolve_config("fashion-cnn", str(toml), {"lr": "0.1"})
    assert cfg["lr"] == 0.1            # command line beats the file
    assert cfg["width"] == 16          # the file beats the task default
    assert cfg["epochs"] == 2.0
    assert cfg["weight_decay"] == 5e-4  # the task default beats TrainConfig's


def test_unknown_key_lists_valid_keys_and_closest():
    r = pillars("train", "fashion-cnn", *sets("learning_rat=0.1"), check=False)
    assert r.returncode == 2
    assert "unknown key 'learning_rat'" in r.stderr
    assert "Valid keys:" in r.stderr and "batch_size" in r.stderr and "width" in r.stderr
    r = pillars("train", "fashion-cnn", *sets("widht=8"), check=False)
    assert "Did you mean 'width'" in r.stderr


def test_unknown_task_suggests_closest():
    r = pillars("train", "fashion-cn", check=False)
    assert r.returncode == 2
    assert "unknown task 'fashion-cn'" in r.stderr and "Did you mean 'fashion-cnn'" in r.stderr


def test_bad_values_are_clear_errors():
    r = pillars("train", "fashion-cnn", *sets("optimizer=lion"), check=False)
    assert r.returncode == 2 and "optimizer must be one of adamw, sgd" in r.stderr
    r = pillars("train", "fashion-cnn", "--batch-size", "100", *sets("accum_steps=3"), check=False)
    assert r.returncode == 2 and "must divide evenly" in r.stderr
    r = pillars("train", "fashion-cnn", *sets("stages=0"), check=False)
    assert r.returncode == 2 and "stages must be at least 1" in r.stderr
    r = pillars("train", "fashion-transfer", "--dry-run", *sets("labels_per_class=4"), check=False)
    assert r.returncode == 2 and "larger than the 40 training examples" in r.stderr


def test_lr_schedule_warmup_then_cosine():
    cfg = {"lr": 1.0, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1}
    assert train.lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert train.lr_at(9, 110, cfg) == pytest.approx(1.0)
    assert train.lr_at(60, 110, cfg) == pytest.approx(0.55)
    assert train.lr_at(110, 110, cfg) == pytest.approx(0.1)
    assert train.lr_at(50, 110, {**cfg, "schedule": "constant"}) == 1.0


def test_list_shows_tasks_and_keys():
    r = pillars("list")
    assert "fashion-cnn" in r.stdout and "fashion-mnist" in r.stdout
    r = pillars("list", "--keys", "fashion-cnn")
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    defaults = train.default_config(tasks.get("fashion-cnn"))
    assert rows[0] == ["key", "default", "type"] and len(rows) == len(defaults) + 1
    assert ["label_smoothing", str(defaults["label_smoothing"]), "float"] in rows and "checkpoint_every" in r.stdout


def test_atomic_write_replaces_whole_files_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "summary.json"
    config.write_text_atomic(path, '{"a": 1}\n')
    config.write_text_atomic(path, '{"a": "é"}\n')
    assert path.read_text(encoding="utf-8") == '{"a": "é"}\n' and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_writer_that_fails_in_an_atomic_path_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"), config.atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    with config.atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# checkpoints.py renames whole folders
RENAMES_OF_THEIR_OWN = ("checkpoints.py",)


def test_files_are_written_only_through_the_atomic_write():
    """A kill mid-write must leave the previous file or none: pillars/ and benchmarks/ write their JSON and
    text files through config.write_text_atomic, never with write_text or json.dump of their own, and rename
    a temporary file onto its target only in config.atomic_path (but for RENAMES_OF_THEIR_OWN)."""
    sources = [*(ROOT / "pillars").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for path in sources if path != ROOT / "pillars" / "config.py"
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if ".write_text(" in line or "json.dump(" in line
             or ("os.replace(" in line and path.name not in RENAMES_OF_THEIR_OWN)]
    assert not found, "\n".join(found)
