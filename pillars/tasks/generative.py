"""GANs: DCGAN and conditional DCGAN on Fashion-MNIST, DCGAN on the 5,000 MNIST digits, with measured quality.

One optimizer step updates both networks from the same batch (simultaneous gradient steps): the loss
is D's loss plus G's; D's term reads G's images detached, and G's term goes through D while D's
parameters are set not to require gradients, so each network receives the gradient of its own
objective only (`gan.GAN.forward`; under torchrun, DistributedDataParallel averages both). Adam with
beta1 = 0.5 and lr 2e-4 as DCGAN; a constant learning rate.

Quality is measured, not eyeballed:
  fid_fashion   the Frechet distance between generated and real test images in the feature space (the
                128-unit hidden layer) of the project's own Fashion-MNIST classifier: a `fashion-cnn`
                trained once (2 epochs, fp32, seed 0) and cached under $PILLARS_HOME/models. It is not
                the Inception FID of other papers and does not compare with their numbers; the distance
                between 10,000 real training and the 10,000 real test images is reported beside it as
                the floor of the scale.
  class shares  the classifier's classes of the generated images: the smallest share is a mode-collapse
                detector (1/10 each when every class is drawn equally often);
  class_accuracy  (conditional) how often the classifier sees the class that was asked for;
  parzen_ll     (mnist-5k) the 2014 paper's Gaussian Parzen-window log-likelihood of the test digits under
                10,000 samples, its width chosen on held-out training digits, in nats.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pillars import data, metrics
from pillars.data.batches import TensorBatches
from pillars.models import gan
from pillars.plots import image_grid
from pillars.tasks import Job, Task, check_choice, register
from pillars.tasks.images import normalised, scaled_pixels

CLASSIFIER_RECIPE = {"epochs": 2.0, "precision": "32", "seed": 0}   # of fashion-cnn, for the metrics


@dataclass
class GANOptions:
    latent: int = 100
    width: int = 64              # G's last hidden layer and D's first; the other layer has twice as many
    loss: str = "nonsaturating"  # nonsaturating (Goodfellow et al. 2014) or hinge
    spectral_norm: bool = False  # D: spectral normalisation in place of BatchNorm
    conditional: bool = False    # both networks read the class
    samples: int = 10000         # generated images behind the Parzen estimate (mnist-5k)


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


def classifier_dir():
    from pillars.data.registry import home
    return home() / "models" / "fashion-classifier"


def fashion_classifier(device: torch.device, log=print):
    """The project's Fashion-MNIST classifier behind fid_fashion: (model, inputs), trained on first use and
    cached. A cached one trained with any other setting (fashion-cnn's defaults included) is trained again."""
    from pillars import train
    run = classifier_dir()
    done = run / "summary.json"
    cfg = train.resolve_config("fashion-cnn", overrides={**CLASSIFIER_RECIPE, "device": device.type})
    if done.exists() and json.loads(done.read_text()).get("status") == "finished" \
            and not train.settings_changed(run, "fashion-cnn", cfg):
        _, _, job, _ = train.load_run(run, device.type)
        return job.model.eval(), job.inputs
    log(f"training the Fashion-MNIST classifier for the GAN metrics (once; cached in {run})")
    import random
    import shutil
    shutil.rmtree(run, ignore_errors=True)
    # It may be asked for in the middle of an evaluation: train with gradients and in full precision
    # whatever the caller's context, and leave the caller's random streams as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad(), \
            torch.autocast(device.type, enabled=False):
        summary = train.fit("fashion-cnn", cfg, run, progress=False, baselines=False, single_process=True)
    random.setstate(py_state)
    np.random.set_state(np_state)
    if summary.get("status") != "finished":
        from pillars.config import ConfigError
        shutil.rmtree(run, ignore_errors=True)
        raise ConfigError("the Fashion-MNIST classifier's training was interrupted; nothing of it is kept, "
                          "and the next GAN run trains it again")
    _, _, job, _ = train.load_run(run, device.type)
    return job.model.eval(), job.inputs


def classifier_features(classifier, inputs, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden features, logits) of images x in [-1, 1], prepared as the classifier's training images;
    always in fp32, so that generated and real images are measured alike."""
    with torch.autocast(x.device.type, enabled=False):
        z = normalised(to_unit(x), inputs.mean, inputs.std)
        return classifier.embedding(z), classifier(z)


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


def build_fashion_gan(cfg: dict, device: torch.device) -> Job:
    arrays = data.load("fashion-mnist")
    classes = data.get("fashion-mnist").meta["classes"]
    train_x, train_y = gan_images(arrays["train_x"]).to(device), torch.from_numpy(arrays["train_y"]).long().to(device)
    test_x, test_y = gan_images(arrays["test_x"]).to(device), torch.from_numpy(arrays["test_y"]).long().to(device)
    model = make_gan(cfg, 1, 28, len(classes))
    # the same noise for test image i at every evaluation, whatever the evaluation batches
    noise = torch.randn(len(test_x), cfg["latent"], generator=torch.Generator().manual_seed(cfg["seed"])).to(device)
    measure: dict = {}

    def measured():
        """The classifier and the real test images' feature statistics, made on first use (so that
        `pillars sample` on a GAN run needs neither)."""
        if not measure:
            classifier, inputs = fashion_classifier(device)
            with torch.no_grad():
                real, logits = map(torch.cat, zip(*(classifier_features(classifier, inputs, xb)
                                                    for xb in test_x.split(1000))))
            measure.update(classifier=classifier, inputs=inputs, real=metrics.feature_gaussian(real),
                           test_accuracy=float((logits.argmax(-1) == test_y).float().mean()))
        return measure

    if torch.distributed.is_initialized():   # under torchrun: the main process trains the classifier now,
        measured()                             # while the others wait to read it (see train.fit)

    def eval_sums(model, batch):
        x, y, index = batch
        m = measured()
        fake = model.generator(noise[index], y if cfg["conditional"] else None)
        feats, logits = classifier_features(m["classifier"], m["inputs"], fake)
        pred = logits.argmax(-1)
        sums = {**metrics.feature_sums(feats), "class_counts": F.one_hot(pred, len(classes)).sum(0).double()}
        if cfg["conditional"]:
            sums["asked_class_correct"] = (pred == y).sum().double()
        return sums

    def summary(sums):
        n = sums["feat_n"]
        shares = np.asarray(sums["class_counts"]) / n
        out = {"fid_fashion": metrics.frechet_distance(*metrics.gaussian(sums), *measured()["real"]),
               "min_class_share": float(shares.min()), "max_class_share": float(shares.max())}
        if cfg["conditional"]:
            out["class_accuracy"] = sums["asked_class_correct"] / n
        return out

    def baselines():
        m = measured()
        with torch.no_grad():
            feats = torch.cat([classifier_features(m["classifier"], m["inputs"], xb)[0]
                               for xb in train_x[:10000].split(1000)])
        with torch.random.fork_rng(devices=[]):   # the other end of the scale: the generator before training
            torch.manual_seed(cfg["seed"])
            fresh = make_gan(cfg, 1, 28, len(classes)).to(device).eval()
        with torch.no_grad():
            fake = torch.cat([classifier_features(m["classifier"], m["inputs"],
                                                  fresh.generator(z, y if cfg["conditional"] else None))[0]
                              for z, y in zip(noise.split(1000), test_y.split(1000))])
        return {"fid_fashion_real_train_vs_test": metrics.frechet_distance(*metrics.feature_gaussian(feats),
                                                                            *m["real"]),
                "fid_fashion_untrained_generator": metrics.frechet_distance(*metrics.feature_gaussian(fake),
                                                                             *m["real"]),
                "classifier_test_accuracy": m["test_accuracy"]}

    index = torch.arange(len(test_x), device=device)
    return Job(model=model, train=TensorBatches((train_x, train_y), cfg["batch_size"], cfg["seed"]),
               test=(test_x, test_y, index), loss=gan_loss(cfg), eval_sums=eval_sums, summary=summary,
               baselines=baselines, images=sample_grid(cfg, len(classes)), conv=True,
               info={"classes": classes, "conditional": cfg["conditional"]})


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * fraction))
    return perm[k:], perm[:k]


PARZEN_SIGMAS = np.logspace(np.log10(0.05), np.log10(0.5), 19)


def best_sigma(samples: torch.Tensor, valid: torch.Tensor) -> float:
    """The Parzen width (of PARZEN_SIGMAS) under which the held-out digits are most likely."""
    scores = [metrics.parzen_log_likelihood(samples, valid, float(s)).mean().item() for s in PARZEN_SIGMAS]
    return float(PARZEN_SIGMAS[int(np.argmax(scores))])


def build_mnist_gan(cfg: dict, device: torch.device) -> Job:
    arrays = data.load("mnist-5k")
    x, y = gan_images(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long()
    train_idx, valid_idx = split_validation(len(x), 0.1, 0)    # the held-out digits choose sigma
    valid = to_unit(x[valid_idx]).flatten(1).to(device)
    train_x, train_y = x[train_idx].to(device), y[train_idx].to(device)
    test_x, test_y = gan_images(arrays["test_x"]).to(device), torch.from_numpy(arrays["test_y"]).long().to(device)
    model = make_gan(cfg, 1, 28, 10)

    def eval_sums(model, batch):
        x, y, _ = batch
        g = torch.Generator().manual_seed(cfg["seed"])
        sizes = [min(1000, cfg["samples"] - i) for i in range(0, cfg["samples"], 1000)]
        samples = torch.cat([to_unit(model.generator(model.noise(k, g), None)).flatten(1) for k in sizes])
        sigma = best_sigma(samples, valid)
        ll = metrics.parzen_log_likelihood(samples, to_unit(x).flatten(1), sigma)
        n = torch.tensor(float(len(x)), device=x.device)
        return {"ll_sum": ll.sum(), "count": n, "sigma_x_count": sigma * n}

    def summary(sums):
        n = max(sums["count"], 1.0)
        return {"parzen_ll": sums["ll_sum"] / n, "parzen_sigma": sums["sigma_x_count"] / n}

    def baselines():
        real = to_unit(train_x).flatten(1)
        sigma = best_sigma(real, valid)
        ll = metrics.parzen_log_likelihood(real, to_unit(test_x).flatten(1), sigma)
        return {"parzen_ll_of_the_training_digits": ll.mean().item(), "parzen_sigma_of_the_training_digits": sigma}

    from pillars.config import ConfigError
    if cfg["conditional"]:
        raise ConfigError("mnist-5k-dcgan is unconditional; use fashion-cdcgan for the conditional model")
    if cfg["samples"] < 1:
        raise ConfigError(f"samples must be at least 1, not {cfg['samples']}")
    index = torch.arange(len(test_x), device=device)
    return Job(model=model, train=TensorBatches((train_x, train_y), cfg["batch_size"], cfg["seed"]),
               test=(test_x, test_y, index), loss=gan_loss(cfg), eval_sums=eval_sums, summary=summary,
               baselines=baselines, images=sample_grid(cfg, 10), conv=True, info={"classes": [str(i) for i in range(10)],
                                                                      "conditional": False})


GAN_DEFAULTS = {"epochs": 10.0, "batch_size": 128, "lr": 2e-4, "betas": "0.5,0.999", "weight_decay": 0.0,
                "schedule": "constant", "precision": "bf16", "eval_batch_size": 1000, "log_every": 20}

register(Task(
    name="fashion-dcgan",
    description="DCGAN on Fashion-MNIST; Frechet distance in the features of the project's classifier",
    dataset="fashion-mnist", model="DCGAN (G and D, 64/128 channels)", objective="GAN loss: non-saturating (or --set loss=hinge)",
    metric="fid_fashion", options=GANOptions, build=build_fashion_gan, higher_is_better=False,
    defaults={**GAN_DEFAULTS},
))

register(Task(
    name="fashion-cdcgan",
    description="conditional DCGAN on Fashion-MNIST: ask for a class; the classifier checks it got one",
    dataset="fashion-mnist", model="conditional DCGAN (class embedding in G, projection in D)",
    objective="GAN loss: non-saturating (or --set loss=hinge)", metric="fid_fashion", options=GANOptions, build=build_fashion_gan,
    higher_is_better=False, defaults={**GAN_DEFAULTS, "conditional": True},
))

register(Task(
    name="mnist-5k-dcgan",
    description="DCGAN on the 5,000 MNIST digits, with the 2014 paper's Parzen-window log-likelihood",
    dataset="mnist-5k", model="DCGAN (G and D, 64/128 channels)", objective="GAN loss: non-saturating (or --set loss=hinge)",
    metric="parzen_ll", options=GANOptions, build=build_mnist_gan,
    defaults={**GAN_DEFAULTS, "epochs": 100.0, "eval_every": 280, "eval_batch_size": 1000, "log_every": 10},
))
