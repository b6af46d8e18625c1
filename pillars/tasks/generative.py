"""GANs: DCGAN and conditional DCGAN on Fashion-MNIST, DCGAN on the 5,000 MNIST digits, with measured quality.

One optimizer step updates both networks from the same batch (simultaneous gradient steps): the loss
is D's loss plus G's; D's term reads G's images detached, and G's term goes through D while D's
parameters are set not to require gradients, so each network receives the gradient of its own
objective only (`gan.GAN.forward`; under torchrun, DistributedDataParallel averages both). Adam with
beta1 = 0.5 and lr 2e-4 as DCGAN; a constant learning rate.

Quality is measured, not eyeballed:
  fid_fashion   the Frechet distance between generated and real images in the feature space (the
                128-unit hidden layer) of the project's own Fashion-MNIST classifier: a `fashion-cnn`
                trained once (2 epochs, fp32, seed 0) and cached under $PILLARS_HOME/models, a run the
                task requires (the run lifecycle trains it before the GAN). The real images are the
                held-out training images for the periodic evaluations (the validation split, the same
                images the classifier holds out) and the test images at the end. It is not the Inception
                FID of other papers and does not compare with their numbers; the distance between 10,000
                real training and the 10,000 real test images is reported beside it as the floor of the
                scale.
                The real images' features are measured once per classifier (`real_features`).
  fid           the standard FID (Heusel et al. 2017) of the test evaluation, on the scale of published
                tables: `fid_samples` (10,000) generated images against as many test images in the
                features of the Inception-v3 of the original TensorFlow code (`data.weights.inception_fid`;
                inputs as `metrics.inception_inputs` makes them: 8-bit, resized to 299, grey repeated to three
                channels). About 0.2 s an image on two CPU cores: half an hour for 10,000, so the periodic
                evaluations keep to fid_fashion; `pillars evaluate RUN --set fid_samples=N` measures a trained
                run. The real images' statistics are measured once and cached (`inception_statistics`); the
                same distance between as many real training and test images is the floor, under baselines.
  class shares  the classifier's classes of the generated images: the smallest share is a mode-collapse
                detector (1/10 each when every class is drawn equally often);
  class_accuracy  (conditional) how often the classifier sees the class that was asked for;
  parzen_ll     (mnist-5k) the 2014 paper's Gaussian Parzen-window log-likelihood of the test digits under
                10,000 samples, its width chosen on the validation split (10% of the training digits,
                held out), in nats.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from pillars import data, explain, metrics
from pillars.config import ConfigError, Range, note
from pillars.data.batches import TensorBatches
from pillars.data.registry import optional_cache, sha256_of
from pillars.models import gan
from pillars.plots import image_grid, save_image_grid
from pillars.tasks import Family, Job, LoadedRun, Requirement, SampleRequest, Task, check_choice, register
from pillars.tasks.images import (VALID_SEED, ConvNetOptions, ImageClassifier, ImageInputs, convnet, few_labels,
                                  from_inputs, held_out, image_job, image_tensors, normalised, scaled_pixels)
from pillars.weights import load_tensors, save_tensors

CLASSIFIER_RECIPE = {"epochs": 2.0, "precision": "32", "seed": 0}   # of fashion-cnn, for the metrics
MEASURE_BATCH = 128    # images per pass of the classifier
VALID_FRACTION = 0.1   # of the training images held out for validation (as the image classifiers' default)
FASHION_TEST_IMAGES = 10000


@dataclass
class GANJob(Job):
    classes: list[str] = field(default_factory=list)   # the dataset's class names
    conditional: bool = False                          # the networks read the class


@dataclass
class GANOptions:
    latent: int = 100
    width: int = 64              # G's last hidden layer and D's first; the other layer has twice as many
    loss: str = "nonsaturating"  # nonsaturating (Goodfellow et al. 2014) or hinge
    spectral_norm: bool = False  # D: spectral normalisation in place of BatchNorm
    conditional: bool = False    # both networks read the class
    samples: int = 10000         # generated images behind the Parzen estimate (mnist-5k)
    fid_samples: int = 10000     # generated and test images behind the standard (Inception) FID at the test
    #                              evaluation of a Fashion-MNIST GAN; 0: none
    labels_per_class: int = 0    # Fashion-MNIST: train on N training images of each class only, drawn with the
    #                              seed as the few-label classifiers draw theirs (0: every training image)

    ranges = {"labels_per_class": Range(0, hint="0: every training image")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "loss", ("nonsaturating", "hinge"))
        if cfg["conditional"] and task.build is build_mnist_gan:
            raise ConfigError(f"{task.name} is unconditional (conditional=true is not one of its settings); "
                              "fashion-cdcgan is the conditional model")
        if cfg["labels_per_class"] and task.build is build_mnist_gan:
            raise ConfigError(f"labels_per_class is a setting of the Fashion-MNIST GANs, not of {task.name}: drop it")
        if not 0 <= cfg["fid_samples"] <= FASHION_TEST_IMAGES:
            raise ConfigError(f"fid_samples must be between 0 (no Inception FID) and {FASHION_TEST_IMAGES:,} (the "
                              f"test images), not {cfg['fid_samples']}")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Generator outputs in [-1, 1] -> pixels in [0, 1]."""
    return (x.float() + 1) / 2


@torch.no_grad()
def draw_grid(model, n: int, y: torch.Tensor | None, seed: int, nrow: int) -> torch.Tensor:
    """A (C, H, W) grid in [0, 1] of `n` images drawn by a GAN's generator from seeded noise (of classes `y`
    for a conditional one), in the model's current mode (eval for sampling)."""
    g = torch.Generator().manual_seed(seed)
    return image_grid(to_unit(model.sample(n, y, g)), nrow=nrow)


def gan_images(pixels) -> torch.Tensor:
    return scaled_pixels(pixels) * 2 - 1


def classifier_dir() -> Path:
    return data.home() / "models" / "fashion-classifier"


def classifier_requirement() -> Requirement:
    """The project's Fashion-MNIST classifier behind fid_fashion: trained once by the run lifecycle and
    cached; a cached one trained with any other setting (fashion-cnn's defaults included) is trained again."""
    return Requirement("fashion-cnn", CLASSIFIER_RECIPE, classifier_dir())


@torch.no_grad()
def classifier_features(classifier, inputs, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden features, logits) of images x in [-1, 1], prepared as the classifier's training images;
    always in fp32, so that generated and real images are measured alike. In batches of 128 and channels
    last: on a CPU that is three to five times faster than one batch of 1,000 (cache-sized activations)."""
    feats, logits = [], []
    with torch.autocast(x.device.type, enabled=False):
        for xb in x.split(MEASURE_BATCH):
            z = normalised(to_unit(xb), inputs.mean, inputs.std).contiguous(memory_format=torch.channels_last)
            h = classifier.embedding(z)
            feats.append(h)
            logits.append(classifier.classify(h))
    return torch.cat(feats), torch.cat(logits)


def gan_loss(cfg: dict):
    def loss(model, batch):
        x, y = batch
        z = torch.randn(len(x), cfg["latent"], device=x.device)
        # through the model's forward (and DistributedDataParallel's, under torchrun): see gan.GAN.forward
        real_logits, fake_logits, g_logits = model(x, z, y if cfg["conditional"] else None)
        d = gan.d_loss(real_logits, fake_logits, cfg["loss"])
        g = gan.g_loss(g_logits, cfg["loss"])
        return d + g, {"d_loss": d.detach(), "g_loss": g.detach(),
                       "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
                       "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}
    return loss


def make_gan(cfg: dict, channels: int, size: int, classes: int) -> gan.GAN:
    """The GAN of the configuration (with compile, the loop compiles its forward: both networks)."""
    check_choice(cfg, "loss", ("nonsaturating", "hinge"))
    return gan.GAN(gan.GANConfig(latent=cfg["latent"], channels=channels, image_size=size, width=cfg["width"],
                                 num_classes=classes if cfg["conditional"] else 0, spectral_norm=cfg["spectral_norm"]))


def sample_grid(cfg: dict, classes: int):
    """A fixed noise batch: 64 samples, or for the conditional model one row of 8 per class."""
    def images(model) -> torch.Tensor:
        y = None
        if cfg["conditional"]:
            y = torch.arange(classes).repeat_interleave(8).to(next(model.parameters()).device)
        return draw_grid(model, 64 if y is None else len(y), y, seed=1234, nrow=8)
    return images


def fashion_splits(device: torch.device) -> tuple[tuple, tuple, tuple]:
    """(x, y) of the training part, the validation part (the stratified 10% of the training images that
    the image classifiers hold out too) and the test set, as GAN images in [-1, 1] on `device`."""
    arrays = data.load("fashion-mnist")
    tr, va = held_out(arrays["train_y"], VALID_FRACTION)
    x, y = gan_images(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long()
    tr, va = torch.from_numpy(tr), torch.from_numpy(va)
    test = gan_images(arrays["test_x"]), torch.from_numpy(arrays["test_y"]).long()
    return tuple((a.to(device), b.to(device)) for a, b in ((x[tr], y[tr]), (x[va], y[va]), test))


def real_features(classifier_run: LoadedRun, sets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's features and logits of every real image of `sets` ({name: images in [-1, 1]}), as
    `{name}_features` and `{name}_logits`. They are computed once per classifier and set of images, and kept
    beside the classifier's weights (real-features.safetensors), as FID tools keep the reference statistics
    (pytorch-fid's --save-stats): every GAN run measured with this classifier reuses them. The file names the
    sha256 of the weights and of each set; another classifier or other images compute them again, and so does
    the next run when the cache cannot be written (read-only)."""
    key = {"classifier": sha256_of(classifier_run.run_dir / "model.safetensors"),
           **{name: hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest() for name, x in sets.items()}}

    def measure() -> dict[str, torch.Tensor]:
        model, inputs = classifier_run.job.model, classifier_run.job.inputs
        out = {}
        for name, x in sets.items():
            out[f"{name}_features"], out[f"{name}_logits"] = classifier_features(model, inputs, x)
        return out
    return cached_tensors(classifier_run.run_dir / "real-features.safetensors", key,
                          "the GAN metric's features of the real images", measure)


def cached_tensors(path: Path, key: dict, what: str, compute: Callable[[], dict[str, torch.Tensor]]
                   ) -> dict[str, torch.Tensor]:
    """Tensors kept in `path` with the metadata `key`: read back when the file's key is `key`, else computed
    by `compute` and saved (a damaged file, or one of other images or weights, is computed again; a cache that
    cannot be written, `what`, is not kept)."""
    if path.exists():
        try:
            tensors, metadata = load_tensors(path)
        except (SafetensorError, ValueError, OSError):   # a damaged cache is measured again
            tensors, metadata = {}, {}
        if metadata == key:
            return tensors
    tensors = {k: v.cpu().contiguous() for k, v in compute().items()}
    with optional_cache(what):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(tensors, path, key)
    return tensors


def inception_statistics(sets: dict[str, torch.Tensor], log=note) -> dict[str, dict[str, np.ndarray]]:
    """The standard FID's feature sums (`metrics.feature_sums`: count, sum, sum of outer products) of each set
    of real images ({name: images in [-1, 1]}), measured once and cached under $PILLARS_HOME/models/
    inception-fid, one file a set named by the sha256 of the images and of the Inception weights (as
    pytorch-fid's --save-stats keeps reference statistics)."""
    from pillars.data.weights import INCEPTION_FID, inception_fid
    from pillars.data.registry import get
    weights_sha = next(f.sha256 for f in get("inception-fid").files if f.inner == INCEPTION_FID)
    out, inception = {}, []
    for name, x in sets.items():
        key = {"inception": weights_sha, "images": hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest()}

        def measure() -> dict[str, torch.Tensor]:
            log(f"measuring the Inception features of {len(x):,} real {name} images once (about 0.2 s an image "
                "on two CPU cores; cached for every later run)")
            if not inception:
                inception.append(inception_fid(x.device))
            return metrics.feature_sums(metrics.inception_features(inception[0], to_unit(x)))
        tensors = cached_tensors(data.home() / "models" / "inception-fid" / f"real-{key['images'][:16]}.safetensors",
                                 key, "the standard FID's statistics of the real images", measure)
        out[name] = {k: v.item() if v.dim() == 0 else v.cpu().numpy() for k, v in tensors.items()}
    return out


def build_fashion_gan(cfg: dict, device: torch.device, needs: dict) -> GANJob:
    classes = data.get("fashion-mnist").meta["classes"]
    (all_x, all_y), (valid_x, valid_y), (test_x, test_y) = fashion_splits(device)
    train_x, train_y = all_x, all_y
    if cfg["labels_per_class"]:   # the few images a few-label classifier of the same seed is given (gan-augment)
        keep = few_labels(all_y, cfg["labels_per_class"], cfg["seed"])
        train_x, train_y = all_x[keep], all_y[keep]
    model = make_gan(cfg, 1, 28, len(classes))
    # one row per real image measured, the test images first, then the validation images: `index` in a batch
    # picks an image's noise (the same at every evaluation, whatever the batches) and its real features
    n_test = len(test_x)
    noise = torch.randn(n_test + len(valid_x), cfg["latent"],
                        generator=torch.Generator().manual_seed(cfg["seed"])).to(device)
    loaded: dict = {}

    def classifier() -> tuple:
        """The metrics' classifier and its inputs, loaded on first use (`pillars sample` needs neither),
        with the features of the real images (`real_features`)."""
        if not loaded:
            run = needs["classifier"]()
            run.job.model.to(device, memory_format=torch.channels_last).eval()
            reals = real_features(run, {"test": test_x, "valid": valid_x, "train": all_x[:10000]})
            loaded.update(model=run.job.model, inputs=run.job.inputs, reals=reals,
                          table=torch.cat([reals["test_features"], reals["valid_features"]]).to(device))
        return loaded["model"], loaded["inputs"]

    inception_net: dict = {}   # the standard FID's Inception-v3, loaded on first use (the test evaluation)

    @functools.cache
    def real_inception(name: str) -> dict[str, np.ndarray]:   # read once for the summary and the baselines
        return inception_statistics({name: {"test": test_x, "train": all_x}[name][:cfg["fid_samples"]]})[name]

    def inception():
        if not inception_net:
            from pillars.data.weights import inception_fid
            note(f"the standard FID: {cfg['fid_samples']:,} generated images through Inception-v3 (about 0.2 s an "
                 "image on two CPU cores; --set fid_samples=0 skips it, a smaller number measures fewer)")
            inception_net["model"] = inception_fid(device)
        return inception_net["model"]

    def eval_sums(model, batch):
        """Features of the generated images and of the real ones of the split (held-out training images
        while training, test images at the end): the Frechet distance is between the two. At the test
        evaluation the first `fid_samples` generated images are measured by Inception-v3 too."""
        _, y, index = batch   # the real images of the batch: their features, measured once, are at `index`
        fake = model.generator(noise[index], y if cfg["conditional"] else None)
        standard = index < cfg["fid_samples"]   # the test rows come first: valid rows are never below n_test
        inception_sums = {}
        if standard.any():
            inception_sums = {f"inception_{k}": v for k, v in metrics.feature_sums(
                metrics.inception_features(inception(), to_unit(fake[standard]))).items()}
        feats, logits = classifier_features(*classifier(), fake)
        real = loaded["table"][index]
        pred = logits.argmax(-1)
        sums = {**metrics.feature_sums(feats), **{f"real_{k}": v for k, v in metrics.feature_sums(real).items()},
                "class_counts": F.one_hot(pred, len(classes)).sum(0).double()}
        if cfg["conditional"]:
            sums["asked_class_correct"] = (pred == y).sum().double()
        return {**sums, **inception_sums}

    def summary(sums):
        n = sums["feat_n"]
        shares = np.asarray(sums["class_counts"]) / n
        real = metrics.gaussian({k[len("real_"):]: v for k, v in sums.items() if k.startswith("real_")})
        out = {"fid_fashion": metrics.frechet_distance(*metrics.gaussian(sums), *real),
               "min_class_share": float(shares.min()), "max_class_share": float(shares.max())}
        if cfg["conditional"]:
            out["class_accuracy"] = sums["asked_class_correct"] / n
        if sums.get("inception_feat_n"):
            real = real_inception("test")
            fake = {k[len("inception_"):]: v for k, v in sums.items() if k.startswith("inception_")}
            out["fid"] = metrics.frechet_distance(*metrics.gaussian(fake), *metrics.gaussian(real))
            out["fid_samples"] = fake["feat_n"]
        return out

    def baselines():
        classifier()
        reals = loaded["reals"]
        real = metrics.feature_gaussian(reals["test_features"])
        with torch.random.fork_rng(devices=[]):   # the other end of the scale: the generator before training
            torch.manual_seed(cfg["seed"])
            fresh = make_gan(cfg, 1, 28, len(classes)).to(device).eval()
        with torch.no_grad():
            fake = torch.cat([fresh.generator(z, y if cfg["conditional"] else None)
                              for z, y in zip(noise[:n_test].split(1000), test_y.split(1000))])
        standard = {}
        if cfg["fid_samples"]:
            train, test = (metrics.gaussian(real_inception(k)) for k in ("train", "test"))
            standard = {"fid_real_train_vs_test": metrics.frechet_distance(*train, *test)}
        return {**standard, "fid_fashion_real_train_vs_test": metrics.frechet_distance(
                    *metrics.feature_gaussian(reals["train_features"]), *real),
                "fid_fashion_untrained_generator": metrics.frechet_distance(
                    *metrics.feature_gaussian(classifier_features(*classifier(), fake)[0]), *real),
                "classifier_test_accuracy": float((reals["test_logits"].argmax(-1) == test_y.cpu()).float().mean())}

    return GANJob(model=model, train=TensorBatches((train_x, train_y), cfg["batch_size"], cfg["seed"]),
                  valid=(valid_x, valid_y, n_test + torch.arange(len(valid_x), device=device)),
                  test=(test_x, test_y, torch.arange(n_test, device=device)), loss=gan_loss(cfg),
                  eval_sums=eval_sums, summary=summary, baselines=baselines, images=sample_grid(cfg, len(classes)),
                  conv=True, classes=classes, conditional=cfg["conditional"])


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * fraction))
    return perm[k:], perm[:k]


PARZEN_SIGMAS = np.logspace(np.log10(0.05), np.log10(0.5), 19)


def best_sigma(samples: torch.Tensor, valid: torch.Tensor) -> float:
    """The Parzen width (of PARZEN_SIGMAS) under which the validation digits are most likely."""
    scores = [metrics.parzen_log_likelihood(samples, valid, float(s)).mean().item() for s in PARZEN_SIGMAS]
    return float(PARZEN_SIGMAS[int(np.argmax(scores))])


def build_mnist_gan(cfg: dict, device: torch.device) -> GANJob:
    """The validation split (10% of the training digits, held out) chooses the Parzen width; the test
    digits are scored under the width chosen there."""
    if cfg["conditional"]:
        raise ConfigError("mnist-5k-dcgan is unconditional; use fashion-cdcgan for the conditional model")
    if cfg["samples"] < 1:
        raise ConfigError(f"samples must be at least 1, not {cfg['samples']}")
    arrays = data.load("mnist-5k")
    x, y = gan_images(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long()
    train_idx, valid_idx = split_validation(len(x), VALID_FRACTION, VALID_SEED)
    valid_x, valid_y = x[valid_idx].to(device), y[valid_idx].to(device)
    valid_pixels = to_unit(valid_x).flatten(1)
    train_x, train_y = x[train_idx].to(device), y[train_idx].to(device)
    test_x, test_y = gan_images(arrays["test_x"]).to(device), torch.from_numpy(arrays["test_y"]).long().to(device)
    model = make_gan(cfg, 1, 28, 10)

    def eval_sums(model, batch):
        x, y, _ = batch
        g = torch.Generator().manual_seed(cfg["seed"])
        sizes = [min(1000, cfg["samples"] - i) for i in range(0, cfg["samples"], 1000)]
        samples = torch.cat([to_unit(model.generator(model.noise(k, g), None)).flatten(1) for k in sizes])
        sigma = best_sigma(samples, valid_pixels)
        ll = metrics.parzen_log_likelihood(samples, to_unit(x).flatten(1), sigma)
        n = torch.tensor(float(len(x)), device=x.device)
        return {"ll_sum": ll.sum(), "count": n, "sigma_x_count": sigma * n}

    def summary(sums):
        n = max(sums["count"], 1.0)
        return {"parzen_ll": sums["ll_sum"] / n, "parzen_sigma": sums["sigma_x_count"] / n}

    def baselines():
        real = to_unit(train_x).flatten(1)
        sigma = best_sigma(real, valid_pixels)
        ll = metrics.parzen_log_likelihood(real, to_unit(test_x).flatten(1), sigma)
        return {"parzen_ll_of_the_training_digits": ll.mean().item(), "parzen_sigma_of_the_training_digits": sigma}

    return GANJob(model=model, train=TensorBatches((train_x, train_y), cfg["batch_size"], cfg["seed"]),
                  valid=(valid_x, valid_y, torch.arange(len(valid_x), device=device)),
                  test=(test_x, test_y, torch.arange(len(test_x), device=device)), loss=gan_loss(cfg),
                  eval_sums=eval_sums, summary=summary, baselines=baselines, images=sample_grid(cfg, 10), conv=True,
                  classes=[str(i) for i in range(10)], conditional=False)


# ----------------------------------------------------------------------------- the family

class GAN(Family):
    """GANs: samples (of a class, for a conditional one), the explain figures (interpolation, the game's
    dynamics) and the measured quality as the headline."""

    what = "GAN"
    baseline_names = {"fid_real_train_vs_test": ("FID real train vs real test", "{:.2f}"),
                      "fid_fashion_real_train_vs_test": ("real train vs real test", "{:.2f}"),
                      "fid_fashion_untrained_generator": ("untrained generator", "{:.0f}"),
                      "parzen_ll_of_the_training_digits": ("training digits themselves", "{:.1f} nats")}
    chance_keys = frozenset({"fid_fashion_untrained_generator"})
    report_figures = ("curves.png", "sample.png", "dynamics.png", "interpolation.png")

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        if "fid_fashion" in f:
            text = f"FID (project classifier) {f['fid_fashion']:.1f}, smallest class share {f['min_class_share']:.2%}"
            if "fid" in f:
                text = f"FID {f['fid']:.1f} (Inception, {f['fid_samples']:,.0f} samples), " + text
            return text + (f", class asked for {f['class_accuracy']:.2%}" if "class_accuracy" in f else "")
        return f"Parzen log-likelihood {f['parzen_ll']:.1f} nats"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        result = explain.explain_gan(run.run_dir, run.job)
        log(f"wrote {run.run_dir / result['interpolation']}: walks through the noise space")
        tail = ("" if result["d_real_last_tenth"] is None else
                f" (last tenth: {result['d_real_last_tenth']:.3f} and {result['d_fake_last_tenth']:.3f})")
        log(f"wrote {run.run_dir / result['dynamics']}: D(x) and D(G(z)) over training{tail}")
        return result

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        """The explain figures, 64 fresh samples (sample.png) and the fixed-noise grids written while training."""
        result = {"explain": self.explain(run, log, light=light)}
        save_image_grid(sample_grid_of(run.job, sample_images(run.job, 64, "", seed=0)[0], ""),
                        run.run_dir / "sample.png")
        result["sample"] = "sample.png"
        grids = sorted((run.run_dir / "samples").glob("step-*.png"))
        result["sample_steps"] = [str(p.relative_to(run.run_dir)) for p in grids]
        return result

    def sample(self, run: LoadedRun, request: SampleRequest, log: Callable[[str], None]) -> None:
        """A grid of generated images (PNG): `request.n` of them (64), of one class for a conditional GAN."""
        path = Path(request.out) if request.out else run.run_dir / "sample.png"
        images, what = self.generated_images(run, request)
        if path.suffix.lower() != ".png":
            raise ConfigError(f"--out {request.out}: a GAN's samples are a PNG image; give a file name ending "
                              "in .png")
        save_image_grid(sample_grid_of(run.job, images, request.class_name), path)
        log(f"wrote {len(images)} generated images{what} to {path}")

    def generated_images(self, run: LoadedRun, request: SampleRequest) -> tuple[torch.Tensor, str]:
        """`request.n` (64) images (n, C, H, W) in [0, 1], of one class for a conditional GAN, and what they
        are: what `sample` draws, for the Python API."""
        plain = SampleRequest()
        text_options = {"--prompt": "prompt", "--length": "length", "--temperature": "temperature",
                        "--top-k": "top_k", "--top-p": "top_p"}
        given = [flag for flag, key in text_options.items() if getattr(request, key) != getattr(plain, key)]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for language models; "
                              "a GAN takes --n, --class, --seed and --out")
        if request.class_name and not run.job.conditional:
            raise ConfigError(f"{run.run_dir} is an unconditional GAN: it cannot be asked for a class "
                              "(train fashion-cdcgan for that)")
        return sample_images(run.job, 64 if request.n is None else request.n, request.class_name, request.seed)

    def graph(self, run: LoadedRun):
        """The generator as exported: noise (batch, latent) [and class ids (batch,) for a conditional GAN] ->
        images (batch, C, H, W) in [0, 1]; the example input is seeded noise."""
        from pillars.export import Graph
        model = run.job.model
        inputs = {"noise": model.noise(2, torch.Generator().manual_seed(0)).to(run.device)}
        if run.job.conditional:
            inputs["label"] = torch.arange(2, device=run.device)
        return Graph(Pixels(model.generator), inputs, {name: {0: "batch"} for name in inputs}, ["image"])


class Pixels(torch.nn.Module):
    """A generator whose images are pixels in [0, 1] rather than its outputs in [-1, 1]."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, noise: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return to_unit(self.generator(noise, label))


@torch.no_grad()
def sample_images(job: GANJob, n: int, class_name: str, seed: int) -> tuple[torch.Tensor, str]:
    """`n` images (n, C, H, W) in [0, 1] drawn from seeded noise, and what they are (" of class C" when asked
    for one): of class `class_name` (a name or number), or for a conditional GAN asked for none, every class
    in turn."""
    if n < 1:
        raise ConfigError("--n must be at least 1")
    classes, y, what = job.classes, None, ""
    device = next(job.model.parameters()).device
    if class_name:
        names = {c.lower(): i for i, c in enumerate(classes)}
        key = class_name.lower()
        if key not in names and not (key.isdigit() and int(key) < len(classes)):
            raise ConfigError(f"unknown class {class_name!r}; the classes are: {', '.join(classes)}")
        c = names[key] if key in names else int(key)
        y, what = torch.full((n,), c, device=device), f" of class {classes[c]}"
    elif job.conditional:
        y = torch.arange(n, device=device) % len(classes)
    return to_unit(job.model.eval().sample(n, y, torch.Generator().manual_seed(seed))), what


def sample_grid_of(job: GANJob, images: torch.Tensor, class_name: str) -> torch.Tensor:
    """`sample_images`' images as one grid: a column per class for a conditional GAN asked for no class
    (every class in turn), else rows of 8."""
    per_row = len(job.classes) if job.conditional and not class_name else 8
    return image_grid(images, nrow=min(len(images), per_row))


# ----------------------------------------------------------------------------- GANs as data augmentation

GAN_AUGMENT_BATCH = 64       # the augmenting GAN's batch (fewer when it has fewer images)


@dataclass
class GANAugmentOptions(ConvNetOptions):
    labels_per_class: int = 10   # labelled training images per class, drawn with the seed; the GAN's are the same
    generated: float = 0.0       # images of the conditional GAN added to each batch, per real image (0: none)
    gan_steps: int = 1000        # the GAN's optimizer steps
    gan_dir: str = ""            # where the GAN is trained once (default: $PILLARS_HOME/models/gan-augment/...)

    ranges = {"generated": Range(0, hint="GAN images per real image in a batch (0: none)"),
              "gan_steps": Range(1, hint="the GAN's optimizer steps")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        ConvNetOptions.check(cfg, task)
        if cfg["train_samples"]:
            raise ConfigError("labels_per_class chooses the training images of fashion-gan-augment: drop --set "
                              "train_samples")
        if cfg["generated"] and cfg["valid_fraction"] != VALID_FRACTION:
            raise ConfigError(f"with generated images the validation split is the GAN's ({VALID_FRACTION}), so that "
                              f"both draw the same labelled images: drop --set valid_fraction")


def augmenting_gan(cfg: dict) -> Requirement:
    """The conditional GAN trained on the classifier's labelled images alone (the same N a class, drawn with the
    same seed from the same training part): no other label reaches the classifier through it. It trains for
    `gan_steps` and keeps its last weights; its periodic figures (fid_fashion, the class asked for, in the
    features of the metric classifier, which saw every label) are reported, never used to choose anything."""
    n, seed, steps = cfg["labels_per_class"], cfg["seed"], cfg["gan_steps"]
    recipe = {"conditional": True, "labels_per_class": n, "seed": seed, "max_steps": steps,
              "batch_size": min(GAN_AUGMENT_BATCH, 10 * n), "eval_every": steps, "fid_samples": 0}
    folder = Path(cfg["gan_dir"]) if cfg["gan_dir"] else \
        data.home() / "models" / "gan-augment" / f"cdcgan-n{n}-seed{seed}-steps{steps}"
    return Requirement("fashion-cdcgan", recipe, folder)


def trained_generator(folder: Path, device: torch.device) -> torch.nn.Module:
    """The generator of the trained GAN in `folder`, in eval mode, built from its config.toml and weights alone
    (not its job: no data is read)."""
    from pillars.runs import saved_config
    from pillars.weights import load_weights, weights_path
    _, cfg = saved_config(folder)
    model = make_gan(cfg, 1, 28, len(data.get("fashion-mnist").meta["classes"]))
    load_weights(model, weights_path(folder))
    return model.generator.to(device).eval().requires_grad_(False)


def build_gan_augment(cfg: dict, device: torch.device, needs: dict) -> Job:
    """fashion-cnn's network on N labelled images per class (drawn from the training part as fashion-transfer
    draws them), each batch extended by `generated` x as many images of the conditional GAN trained on the same
    images, of classes drawn uniformly, from fresh noise every step (from the global generator, so that a resumed
    run draws the same). Pixels are scaled to [-1, 1], the GAN's own range, for real and generated images."""
    (train_x, train_y), valid, test, mean, std = image_tensors(data.load("fashion-mnist"), device,
                                                               cfg["valid_fraction"], mean=[0.5], std=[0.5])
    keep = few_labels(train_y, cfg["labels_per_class"], cfg["seed"])
    classes = data.get("fashion-mnist").meta["classes"]
    inputs = ImageInputs(1, 28, mean, std, classes, light_on_dark=True)
    generator: list = []

    def extend(batch: tuple) -> tuple:
        x, y = batch
        if not generator:   # loaded at the first step; building it draws nothing from the run's random numbers
            with torch.random.fork_rng(devices=[]):
                generator.append(trained_generator(augmenting_gan(cfg).folder, device))
        k = round(cfg["generated"] * len(x))
        with torch.no_grad():
            fake_y = torch.randint(len(classes), (k,), device=device)
            fake = generator[0](torch.randn(k, generator[0].cfg.latent, device=device), fake_y).float()
        return torch.cat([x, fake]), torch.cat([y, fake_y])

    return image_job(cfg, convnet(cfg, 1, 28, len(classes)), (train_x[keep], train_y[keep]), valid, test, inputs,
                     extend=extend if cfg["generated"] else None)


GAN_DEFAULTS = {"epochs": 10.0, "batch_size": 128, "lr": 2e-4, "betas": "0.5,0.999", "weight_decay": 0.0,
                "schedule": "constant", "precision": "auto", "eval_batch_size": 1000, "log_every": 20}

register(Task(
    name="fashion-dcgan",
    description="DCGAN on Fashion-MNIST; Frechet distance in the features of the project's classifier",
    dataset="fashion-mnist", model="DCGAN (G and D, 64/128 channels)", objective="GAN loss: non-saturating (or --set loss=hinge)",
    metric="fid_fashion", options=GANOptions, build=build_fashion_gan, higher_is_better=False,
    defaults={**GAN_DEFAULTS}, family=GAN(), requires=lambda cfg: {"classifier": classifier_requirement()},
))

register(Task(
    name="fashion-cdcgan",
    description="conditional DCGAN on Fashion-MNIST: ask for a class; the classifier checks it got one",
    dataset="fashion-mnist", model="conditional DCGAN (class embedding in G, projection in D)",
    objective="GAN loss: non-saturating (or --set loss=hinge)", metric="fid_fashion", options=GANOptions, build=build_fashion_gan,
    higher_is_better=False, defaults={**GAN_DEFAULTS, "conditional": True}, family=GAN(),
    requires=lambda cfg: {"classifier": classifier_requirement()},
))

register(Task(
    name="mnist-5k-dcgan",
    description="DCGAN on the 5,000 MNIST digits, with the 2014 paper's Parzen-window log-likelihood",
    dataset="mnist-5k", model="DCGAN (G and D, 64/128 channels)", objective="GAN loss: non-saturating (or --set loss=hinge)",
    metric="parzen_ll", options=GANOptions, build=build_mnist_gan, family=GAN(),
    defaults={**GAN_DEFAULTS, "epochs": 100.0, "eval_every": 280, "eval_batch_size": 1000, "log_every": 10},
))

register(Task(
    name="fashion-gan-augment",
    description="fashion-cnn's network on N labelled Fashion-MNIST images per class, with (--set generated=0.5) "
                "images of a conditional GAN trained on those same images",
    dataset="fashion-mnist", model="ConvNet (2 stages, 32/64 channels, BatchNorm) [+ conditional DCGAN]",
    objective="cross-entropy", metric="accuracy", options=GANAugmentOptions, build=build_gan_augment,
    family=ImageClassifier(from_inputs(convnet), lambda cfg, device: build_gan_augment(cfg, device, {}), 10),
    defaults={"max_steps": 300, "batch_size": 50, "lr": 2e-3, "weight_decay": 5e-4, "warmup_steps": 25,
              "eval_every": 300, "eval_batch_size": 1000},
    requires=lambda cfg: {"gan": augmenting_gan(cfg)} if cfg["generated"] else {},
))
