"""GANs: the networks' shapes, the metrics against their definitions, and a short real-data run."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pillars import metrics
from pillars.models import gan
from tests.conftest import ROOT, pillars, sets


@pytest.mark.parametrize("conditional,sn", [(False, False), (True, False), (False, True)])
def test_generator_and_discriminator_shapes_and_gradients(conditional, sn):
    cfg = gan.GANConfig(latent=16, width=8, num_classes=10 if conditional else 0, spectral_norm=sn)
    model = gan.GAN(cfg)
    y = torch.arange(6) % 10 if conditional else None
    x = model.generator(torch.randn(6, 16), y)
    assert x.shape == (6, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    logits = model.discriminator(x, y)
    assert logits.shape == (6,)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if conditional:
        with pytest.raises(ValueError, match="needs the classes"):
            model.generator(torch.randn(2, 16))


def test_gan_losses_are_the_papers():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(gan.d_loss(real, fake), d)
    assert torch.allclose(gan.g_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    assert torch.allclose(gan.d_loss(real, fake, "hinge"), torch.tensor((0 + 2) / 2 + (1.5 + 0) / 2))


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_noise():
    from scipy import linalg
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 16, generator=g) @ torch.randn(16, 16, generator=g)
    stats = metrics.gaussian({k: v.item() if v.dim() == 0 else v.numpy() for k, v in metrics.feature_sums(a).items()})
    assert abs(metrics.frechet_distance(*stats, *stats)) < 1e-6
    previous = 0.0
    for noise in (0.1, 0.5, 1.0, 2.0):
        b = a + noise * torch.randn(a.shape, generator=g)
        other = metrics.gaussian({k: v.item() if v.dim() == 0 else v.numpy()
                                  for k, v in metrics.feature_sums(b).items()})
        d = metrics.frechet_distance(*stats, *other)
        assert d > previous
        previous = d
    (m1, c1), (m2, c2) = stats, other     # the same as the formula through scipy's matrix square root
    ref = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert abs(d - ref) < 1e-6 * ref
    # the sums of two halves give the moments of the whole set
    halves = [metrics.feature_sums(h) for h in a.split(1000)]
    whole = metrics.gaussian({k: (halves[0][k] + halves[1][k]).numpy() if halves[0][k].dim() else
                              (halves[0][k] + halves[1][k]).item() for k in halves[0]})
    assert np.allclose(whole[0], a.double().mean(0).numpy()) and np.allclose(whole[1], np.cov(a.double().numpy(),
                                                                                                rowvar=False))


def test_inception_inputs_follow_the_standard_fid_conventions():
    """8-bit pixel values, TensorFlow's legacy bilinear resize to 299 (output pixel j reads input position
    j * in / out, clamped at the border: not F.interpolate's pixel centres), grey repeated to three channels,
    then (pixel - 128) / 128."""
    row = torch.rand(28, generator=torch.Generator().manual_seed(0))
    x = row.expand(2, 1, 28, 28)                 # every row the same: the resize along a row is all there is
    z = metrics.inception_inputs(x)
    assert z.shape == (2, 3, 299, 299) and torch.equal(z[:, 0], z[:, 2]) and torch.equal(z[:, :, 0], z[:, :, 298])
    u = (row * 255).round()
    for j in (0, 1, 150, 287, 298):
        pos = j * 28 / 299
        i0, f = int(pos), pos - int(pos)
        ref = ((1 - f) * u[i0] + f * u[min(i0 + 1, 27)] - 128) / 128
        assert abs(z[1, 1, 40, j] - ref) < 1e-5, j
    assert not torch.allclose(z[0, 0, 0], (F.interpolate(u[None, None, None], (1, 299), mode="bilinear")[0, 0, 0]
                                           - 128) / 128, atol=1e-3)    # pixel centres would differ
    rgb = torch.rand(1, 3, 299, 299)
    assert torch.allclose(metrics.inception_inputs(rgb), ((rgb * 255).round() - 128) / 128)   # no resize


def test_the_standard_fid_extractor_is_the_same_through_onnx_runtime_and_torchscript():
    """The pinned Inception-v3 (2048 features) gives the same features whether it runs as the TorchScript
    archive or through ONNX Runtime (the CPU path), and the Frechet distance of a set with itself is 0."""
    pytest.importorskip("onnxruntime")
    from pillars import data
    from pillars.data import weights
    x = torch.from_numpy(data.load("fashion-mnist")["test_x"][:4]).float().unsqueeze(1) / 255
    fast = metrics.inception_features(weights.inception_fid("cpu"), x)
    script = torch.jit.load(str(weights.fetch("inception-fid")["inception-fid-default_1.pt"]), map_location="cpu")
    ref = metrics.inception_features(script.eval(), x)
    assert fast.shape == (4, 2048) and torch.allclose(fast, ref, atol=1e-4), (fast - ref).abs().max()
    stats = metrics.feature_gaussian(fast)
    assert abs(metrics.frechet_distance(*stats, *stats)) < 1e-5 * np.trace(stats[1])   # rank 3 in 2,048 dims


def test_parzen_window_is_a_gaussian_mixture_density():
    samples = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    x = torch.tensor([[0.5, 0.5]])
    sigma = 0.7
    pdf = sum(np.exp(-((0.5 - m) ** 2 + 0.25) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2) for m in (0.0, 1.0)) / 2
    assert abs(metrics.parzen_log_likelihood(samples, x, sigma).item() - np.log(pdf)) < 1e-9


def test_a_short_real_run_plays_the_game_and_samples(tmp_path):
    run = tmp_path / "gan"
    pillars("train", "fashion-dcgan", "--max-steps", "120", "--out", str(run), "--no-progress",
            *sets("eval_every=60", "eval_batches=2", "log_every=5", "width=32", "fid_samples=16"))
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [ln for ln in lines if ln["split"] == "train"]
    d, g = np.array([ln["d_loss"] for ln in train]), np.array([ln["g_loss"] for ln in train])
    assert np.corrcoef(d, g)[0, 1] < -0.3, (d.round(2), g.round(2))   # one gains what the other loses
    valid = [ln for ln in lines if ln["split"] == "valid"]   # against the held-out training images
    assert valid[-1]["fid_fashion"] < valid[0]["fid_fashion"], valid
    assert [ln["step"] for ln in lines if ln["split"] == "test"] == [120]   # the test images, once, at the end
    summary = json.loads((run / "summary.json").read_text())
    assert summary["valid"]["fid_fashion"] == valid[-1]["fid_fashion"] != summary["final"]["fid_fashion"]
    assert summary["baselines"]["classifier_test_accuracy"] > 0.88
    assert 0 < summary["baselines"]["fid_fashion_real_train_vs_test"] < summary["final"]["fid_fashion"]
    # the standard (Inception) FID of the first 16 generated images against the first 16 test images, at the
    # test evaluation only; its floor, 16 training images against the same test images, under baselines
    assert summary["final"]["fid_samples"] == 16 and "fid" not in valid[-1]
    assert 0 < summary["baselines"]["fid_real_train_vs_test"] < summary["final"]["fid"]
    with Image.open(run / "samples" / "step-000120.png") as im:
        im.verify()

    pillars("sample", str(run), "--n", "16", "--out", str(tmp_path / "grid.png"))
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == ((8 * 30 + 2) * 2, (2 * 30 + 2) * 2)
    r = pillars("sample", str(run), "--class", "sneaker", check=False)
    assert r.returncode == 2 and "unconditional" in r.stderr
    r = pillars("sample", str(run), "--prompt", "a shoe", check=False)
    assert r.returncode == 2 and "--prompt is for language models" in r.stderr
    r = pillars("sample", str(run), "--out", str(tmp_path / "g.txt"), check=False)
    assert r.returncode == 2 and "ending in .png" in r.stderr and not (tmp_path / "g.txt").exists()
    out = pillars("explain", str(run)).stdout
    assert "interpolation.png: walks through the noise space" in out and "D(x) and D(G(z)) over training" in out
    for png in ("interpolation.png", "dynamics.png"):
        with Image.open(run / png) as im:
            im.verify()
    from pillars import tasks
    family = tasks.get("fashion-dcgan").family
    assert family.headline(summary).startswith(f"FID {summary['final']['fid']:.1f} (Inception, 16 samples), FID "
                                               f"(project classifier) {summary['final']['fid_fashion']:.1f}, ")
    assert family.chance(summary).startswith("untrained generator ")
    assert family.baselines_text(summary, "baselines").startswith("FID real train vs real test ")


def torchrun(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_torchrun_trains_both_networks_in_two_processes_and_the_conditional_gan_answers_for_a_class(tmp_path):
    """Under torchrun the GAN's two losses go through DistributedDataParallel's forward, so both networks'
    gradients are averaged; the loop checks at every checkpoint that the processes hold the same weights.
    The run is of the conditional GAN, which then draws the class it is asked for."""
    run = tmp_path / "ddp"
    r = torchrun("-m", "pillars", "train", "fashion-cdcgan", "--max-steps", "12", "--out", str(run), "--no-progress",
                 *sets("width=8", "batch_size=32", "eval_every=6", "eval_batches=1", "log_every=3", "fid_samples=0"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "finished"
    assert "class_accuracy" in summary["final"] and (run / "samples" / "step-000012.png").exists()
    out = pillars("sample", str(run), "--class", "Sneaker", "--n", "8", "--out", str(tmp_path / "s.png")).stdout
    assert "of class sneaker" in out
    r = pillars("sample", str(run), "--class", "hat", check=False)
    assert r.returncode == 2 and "ankle boot" in r.stderr


def test_the_check_in_step_catches_processes_that_drift_apart(tmp_path):
    script = tmp_path / "drift.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from pillars import train\n"
        "dist.init_process_group('gloo')\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Linear(3, 2)\n"
        "train.check_in_step(model, 1)\n"                 # the same weights pass
        "with torch.no_grad():\n"
        "    model.bias[0] += dist.get_rank() * 1e-6\n"  # rank 1 drifts by a hair
        "train.check_in_step(model, 2)\n")
    r = torchrun(str(script))
    assert r.returncode != 0 and "weights differ at step 2" in r.stderr, r.stderr[-3000:]


def gan_job(name: str, needs: dict | None = None, **settings):
    from pillars import tasks, train
    cfg = train.resolve_config(name, overrides={"device": "cpu", "width": 8, **settings})
    return tasks.get(name).make_job(cfg, torch.device("cpu"), needs)


def test_the_gan_splits_hold_out_training_images_and_keep_the_test_sets(fashion):
    """fashion GANs validate on the training images the image classifiers hold out (stratified, fixed),
    mnist-5k-dcgan on the 10% of its training digits that chooses the Parzen width; the test sets are
    the datasets' own."""
    from pillars import data
    from pillars.tasks.generative import gan_images
    from pillars.tasks.images import held_out
    job = gan_job("fashion-cdcgan")
    assert job.conditional and job.classes[9] == "ankle boot"
    tr, va = held_out(fashion["train_y"], 0.1)
    assert torch.equal(job.valid[0], gan_images(fashion["train_x"][va]))
    assert torch.equal(job.train.tensors[0], gan_images(fashion["train_x"][tr]))
    assert torch.equal(job.test[0], gan_images(fashion["test_x"])) and len(job.test[0]) == 10000
    assert torch.equal(job.valid[1], torch.from_numpy(fashion["train_y"][va]))
    assert np.bincount(job.valid[1].numpy()).tolist() == [600] * 10
    digits = data.load("mnist-5k")
    job = gan_job("mnist-5k-dcgan")
    assert (len(job.train.tensors[0]), len(job.valid[0])) == (3600, 400) and not job.conditional
    assert torch.equal(job.test[0], gan_images(digits["test_x"]))
    seen = {x.numpy().tobytes() for x in job.train.tensors[0]}
    assert not any(x.numpy().tobytes() in seen for x in job.valid[0])


def test_the_metrics_classifier_is_a_required_run_cached_and_retrained_when_its_recipe_changes(tmp_path,
                                                                                                monkeypatch):
    """The fashion GANs require a fashion-cnn run: the run lifecycle trains it once and reuses it, and
    trains it again when its recipe changes. A GAN job loads it on its first evaluation, not before, and
    the FID it sums over a split's batches is the distance to that split's real images (the test images
    for the test FID, as before)."""
    from pillars import runs, tasks
    from pillars.tasks import generative
    monkeypatch.setattr(generative, "classifier_dir", lambda: tmp_path / "classifier")
    tiny = {"max_steps": 2, "width": 4, "hidden": 8, "train_samples": 256, "eval_batch_size": 5000, "seed": 0}
    monkeypatch.setattr(generative, "CLASSIFIER_RECIPE", {**tiny, "flip": True})
    said = []
    task = tasks.get("fashion-dcgan")
    req = task.requires({})["classifier"]
    assert req.task == "fashion-cnn" and req.folder == tmp_path / "classifier"
    first = runs.load(runs.ensure(req, "cpu", log=said.append), "cpu").job.model
    again = runs.load(runs.ensure(task.requires({})["classifier"], "cpu", log=said.append), "cpu").job.model
    assert len(said) == 1 and all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                                   again.state_dict().values()))
    monkeypatch.setattr(generative, "CLASSIFIER_RECIPE", tiny)   # fashion-cnn's default (no flips) again
    runs.ensure(task.requires({})["classifier"], "cpu", log=said.append)
    assert len(said) == 2 and "training" in said[1]

    loads, loaded = [], runs.load(req.folder, "cpu")
    job = gan_job("fashion-dcgan", {"classifier": lambda: loads.append(1) or loaded}, fid_samples="0")
    assert not loads                                             # building the job (as `pillars sample`) needs none
    model, n = job.model.eval(), 2000
    with torch.no_grad():
        sums = [job.eval_sums(model, tuple(t[i:i + 1000] for t in job.test)) for i in range(0, n, 1000)]
        noise = torch.randn(10000, 100, generator=torch.Generator().manual_seed(0))[:n]
        fake = torch.cat([model.generator(z, None) for z in noise.split(1000)])
    assert len(loads) == 1
    total = {k: sum(s[k] for s in sums) for k in sums[0]}
    fid = job.summary({k: v.item() if v.dim() == 0 else v.numpy() for k, v in total.items()})["fid_fashion"]
    real, fake = (metrics.feature_gaussian(generative.classifier_features(loaded.job.model, loaded.job.inputs, x)[0])
                  for x in (job.test[0][:n], fake))                 # the test images' own features, as before
    assert abs(fid - metrics.frechet_distance(*fake, *real)) < 1e-6 * fid

    # the real images' features were measured once and kept beside the classifier, keyed by its weights and
    # the images: the same request reads them back, other images (or another classifier) measure again
    measured, original = [], generative.classifier_features
    monkeypatch.setattr(generative, "classifier_features", lambda *a: measured.append(1) or original(*a))
    assert (req.folder / "real-features.safetensors").exists()
    sets = {"test": job.test[0], "valid": job.valid[0], "train": job.train.tensors[0][:10000]}
    again = generative.real_features(loaded, sets)
    assert not measured
    assert torch.allclose(again["test_features"][:n], original(loaded.job.model, loaded.job.inputs, job.test[0][:n])[0],
                          atol=1e-5)
    generative.real_features(loaded, {**sets, "test": job.test[0][:500]})
    assert len(measured) == 3   # a set changed: the three are measured again, and the file rewritten
