"""Generative adversarial networks (Goodfellow et al. 2014): a forger and a detective trained against each other.

The generator G maps noise z ~ N(0, I) to an image; the discriminator D maps an image to a logit, the
log-odds that it is real. The 2014 paper's game is

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

D is trained as a binary classifier (real 1, generated 0). For G the paper recommends maximising log D(G(z))
instead of minimising log(1 - D(G(z))): the same fixed point, but strong gradients early on, when D rejects
every sample easily (the "non-saturating" loss). With logits l, log D = -softplus(-l) and
log(1 - D) = -softplus(l). The hinge loss (Lim & Ye 2017; Miyato et al. 2018) is the other common choice.

The networks follow DCGAN's guidelines (Radford et al. 2015): no pooling, strided (transposed) convolutions
to change resolution; BatchNorm in both networks except G's output and D's input; ReLU in G with a tanh
output (images in [-1, 1]); LeakyReLU(0.2) in D. `spectral_norm=True` constrains each of D's layers to
Lipschitz constant 1 (Miyato et al. 2018) in place of BatchNorm.

The conditional variant (Mirza & Osindero 2014) gives both networks the class: G reads [z, embed(y)];
D adds a projection term <embed(y), phi(x)> to its logit (Miyato & Koyama 2018), so it judges whether x is
a realistic image *of class y*.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GANConfig:
    latent: int = 100          # dimension of z
    channels: int = 1
    image_size: int = 28       # a multiple of 4: two stride-2 steps from image_size / 4
    width: int = 64            # channels of G's last hidden layer and D's first; the other layer doubles it
    num_classes: int = 0       # > 0: the conditional variant
    class_embed: int = 32      # G's class embedding, concatenated to z
    spectral_norm: bool = False  # D: spectral normalisation instead of BatchNorm


def dcgan_init(m: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02) and shift 0; class
    embeddings N(0, 0.02) too, or D's projection term would start some 50 times larger than its logit."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, latent) [and y (B,)] -> images (B, C, S, S) in [-1, 1]:
    linear to (2w, S/4, S/4) -> BN, ReLU -> transposed conv to (w, S/2, S/2) -> BN, ReLU ->
    transposed conv to (C, S, S) -> tanh."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        if cfg.image_size % 4:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of 4")
        self.cfg = cfg
        w, s = cfg.width, cfg.image_size // 4
        self.embed = nn.Embedding(cfg.num_classes, cfg.class_embed) if cfg.num_classes else None
        inputs = cfg.latent + (cfg.class_embed if cfg.num_classes else 0)
        self.project = nn.Sequential(nn.Linear(inputs, 2 * w * s * s, bias=False), nn.Unflatten(1, (2 * w, s, s)),
                                     nn.BatchNorm2d(2 * w), nn.ReLU(True))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.ConvTranspose2d(w, cfg.channels, 4, stride=2, padding=1), nn.Tanh())
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs the classes y")
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.up(self.project(z))


class Discriminator(nn.Module):
    """images (B, C, S, S) [and y] -> logits (B,): conv stride 2 to (w, S/2) -> LeakyReLU ->
    conv stride 2 to (2w, S/4) -> BN, LeakyReLU -> phi(x) -> linear; + <embed(y), phi(x)> if conditional."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w, s = cfg.width, cfg.image_size // 4
        norm = nn.Identity() if cfg.spectral_norm else nn.BatchNorm2d(2 * w)
        self.features = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=cfg.spectral_norm), norm, nn.LeakyReLU(0.2, True),
            nn.Flatten())
        self.out = nn.Linear(2 * w * s * s, 1)
        self.embed = nn.Embedding(cfg.num_classes, 2 * w * s * s) if cfg.num_classes else None
        self.apply(dcgan_init)
        if cfg.spectral_norm:   # W / sigma(W), sigma by power iteration; after the init, which it rescales
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        logit = self.out(phi)[:, 0]
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional discriminator needs the classes y")
            logit = logit + (self.embed(y) * phi).sum(1)      # the projection term
        return logit


class GAN(nn.Module):
    """The two networks as one module, so that one checkpoint holds both."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)

    def forward(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None):
        """One training step's three readings of D: (D(x), D(G(z)) for D's loss, D(G(z)) for G's loss).
        D's loss must not reach G, so its reading sees G's images detached; G's loss must not reach D, so
        its reading runs with D's parameters frozen. Both losses then come from one forward pass, which is
        what DistributedDataParallel needs to average both networks' gradients over the processes."""
        fake = self.generator(z, y)
        real_logits = self.discriminator(x, y)
        fake_logits = self.discriminator(fake.detach(), y)
        self.discriminator.requires_grad_(False)
        try:
            g_logits = self.discriminator(fake, y)
        finally:
            self.discriminator.requires_grad_(True)
        return real_logits, fake_logits, g_logits

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.cfg.latent, generator=generator).to(device)

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [-1, 1] from fresh noise (classes y for the conditional model), in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.generator(self.noise(n, generator), y).float()
        finally:
            self.train(was)


# ----------------------------------------------------------------------------- losses

def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The discriminator's loss on the logits of real and generated images."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()    # -log D(x) - log(1 - D(G(z)))


def g_loss(fake: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The generator's loss on the logits of its images: -log D(G(z)) (non-saturating) or -D's score."""
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()
