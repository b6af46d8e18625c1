"""A GAN as data augmentation: the GAN sees the classifier's labelled images and no others, its images extend
the classifier's batches, and `pillars experiment gan-augment` runs its three arms end to end."""
import json

import pytest
import torch

from tests.conftest import pillars, sets
from pillars import experiments, runs, tasks, train
from pillars.config import ConfigError


def job_of(task: str, **overrides):
    cfg = train.resolve_config(task, overrides={k: str(v) for k, v in overrides.items()})
    return tasks.get(task).make_job(cfg, torch.device("cpu"), {})


def test_the_gan_is_given_the_labelled_images_of_the_classifier_and_no_others():
    """Same N a class, same seed: the conditional GAN's training set is the few-label classifier's, image for
    image and label for label (both scale pixels to [-1, 1]); another seed draws other images."""
    classifier = job_of("fashion-gan-augment", labels_per_class=7, seed=3)
    gan = job_of("fashion-cdcgan", labels_per_class=7, seed=3, fid_samples=0, batch_size=64)
    (cx, cy), (gx, gy) = classifier.train.tensors, gan.train.tensors
    assert len(cx) == len(gx) == 70 and torch.equal(cy, gy)
    assert torch.bincount(gy).tolist() == [7] * 10
    torch.testing.assert_close(cx, gx, atol=1e-6, rtol=0)
    other = job_of("fashion-cdcgan", labels_per_class=7, seed=4, fid_samples=0, batch_size=64)
    assert not torch.equal(other.train.tensors[0], gx)
    # the floors and the metrics' real images stay every image of the training part
    assert len(job_of("fashion-cdcgan", fid_samples=0).train.tensors[0]) == 54000


def test_bad_settings_name_the_problem():
    with pytest.raises(ConfigError, match="labels_per_class must be at least 1"):
        train.resolve_config("fashion-gan-augment", overrides={"labels_per_class": "0"})
    with pytest.raises(ConfigError, match="generated must be at least 0, not -1.0: GAN images per real image"):
        train.resolve_config("fashion-gan-augment", overrides={"generated": "-1"})
    with pytest.raises(ConfigError, match="drop --set valid_fraction"):
        train.resolve_config("fashion-gan-augment", overrides={"generated": "1", "valid_fraction": "0.2"})
    with pytest.raises(ConfigError, match="not of mnist-5k-dcgan"):
        train.resolve_config("mnist-5k-dcgan", overrides={"labels_per_class": "10"})
    with pytest.raises(ConfigError, match="gan-augment sets seed itself"):
        experiments.gan_augment(None, extra={"seed": 1})
    bad = pillars("experiment", "gan-augment", "--lags", "5", check=False)
    assert bad.returncode == 2 and "--lags is not an option of gan-augment" in bad.stderr
    with pytest.raises(ConfigError, match="drop --set train_samples"):
        train.resolve_config("fashion-gan-augment", overrides={"train_samples": "100"})


def test_a_users_folder_named_as_the_gans_is_never_emptied(tmp_path):
    """gan_dir names where the GAN is trained first: a folder holding anything else is left as it is (an
    error says so), and the run's own folder cannot be it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = pillars("train", "fashion-gan-augment", "--out", str(tmp_path / "c"), *sets("generated=0.5", f"gan_dir={mine}"),
                check=False)
    assert r.returncode == 2 and "which pillars does not delete" in r.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
    r = pillars("train", "fashion-gan-augment", "--out", str(tmp_path / "c2"),
                *sets("generated=0.5", f"gan_dir={tmp_path / 'c2'}"), check=False)
    assert r.returncode == 2 and "this run's folder and the folder of a run it needs first" in r.stderr


def test_the_experiment_trains_the_gan_first_and_its_images_extend_the_batches(tmp_path):
    """Two labelled images a class, one seed, a few steps: the GAN is trained first on those 20 images, the
    three arms train, the table, json and plot are written; the GAN arm's batches add GAN_GENERATED x as many
    generated images (from the GAN's generator, of classes drawn uniformly) as real ones."""
    out = tmp_path / "xp"
    extra = {"max_steps": 3, "gan_steps": 3, "batch_size": 10, "eval_every": 3, "log_every": 1, "width": 8,
             "hidden": 32, "eval_batches": 1, "eval_batch_size": 500}   # small classifiers, 500 validation images
    table = experiments.gan_augment(out, labels=(2,), seeds=(0,), extra=extra, log=lambda s: None)
    for arm in ("real", "classic", "gan"):
        assert 0 <= table[arm][2]["mean"] <= 1 and len(table[arm][2]["runs"]) == 1
    assert set(table["gan_quality"]) == {"class_accuracy", "fid_fashion"}
    assert json.loads((out / "gan_augment.json").read_text())["gan"]["2"]["runs"] == table["gan"][2]["runs"]
    assert (out / "gan_augment.png").stat().st_size > 10_000
    gan_dir = out / "gan-n2-seed0"
    gan_cfg = runs.saved_config(gan_dir)[1]
    assert gan_cfg["labels_per_class"] == 2 and gan_cfg["seed"] == 0 and gan_cfg["batch_size"] == 20
    assert runs.summary_of(gan_dir)["steps"] == 3
    # a second call reuses every run
    assert experiments.gan_augment(out, labels=(2,), seeds=(0,), extra=extra, log=lambda s: None) == table

    shown = pillars("experiment", "gan-augment", "--labels", "2", "--seeds", "1", "--out", str(out),
                    *sets(*(f"{k}={v}" for k, v in extra.items())))
    assert "labels/class" in shown.stdout and "GAN gain" in shown.stdout
    assert f"{100 * table['gan'][2]['mean']:.2f}%" in shown.stdout

    run = runs.load(out / "n2-gan-seed0", "cpu")
    x, y = run.job.train.batch(0)
    seen = []
    torch.manual_seed(5)
    run.job.loss(lambda images: seen.append(images) or torch.zeros(len(images), 10), (x, y))
    k = round(experiments.GAN_GENERATED * len(x))
    assert k > 0 and len(seen[0]) == len(x) + k and torch.equal(seen[0][:len(x)], x)
    generator = runs.load(gan_dir, "cpu").job.model.generator.eval()
    torch.manual_seed(5)
    classes = torch.randint(10, (k,))
    with torch.no_grad():
        expected = generator(torch.randn(k, generator.cfg.latent), classes)
    torch.testing.assert_close(seen[0][len(x):], expected)   # fresh noise, classes drawn uniformly
    plain = runs.load(out / "n2-real-seed0", "cpu")
    seen.clear()
    plain.job.loss(lambda images: seen.append(images) or torch.zeros(len(images), 10), (x, y))
    assert torch.equal(seen[0], x)
