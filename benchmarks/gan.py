"""fashion-dcgan training steps: the tuned configuration against a plain fp32 eager loop of the same networks.

    python benchmarks/gan.py                    # both, on this machine
    python benchmarks/gan.py --device cuda --compile
    python benchmarks/gan.py --conditional      # fashion-cdcgan's networks

One iteration is what the training loop does per step: G makes a batch, D judges real and generated
images, both losses go backward, Adam steps both networks (pillars.tasks.generative.gan_loss). Both runs
start from the same weights and read the same Fashion-MNIST batches; they differ only in the speed
settings: tuned = bf16 autocast + channels_last (+ torch.compile with --compile), plain = fp32, default
memory format, eager. `--warmup` iterations are run first and not timed, then `--steps`. Printed:
iterations/s and images/s of each, and the ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pillars import data  # noqa: E402
from pillars.devices import machine_name, resolve_device  # noqa: E402
from pillars.models import gan  # noqa: E402
from pillars.tasks import generative  # noqa: E402


def speed(state: dict, gcfg: gan.GANConfig, cfg: dict, x: torch.Tensor, y: torch.Tensor, device: torch.device,
          tuned: bool, compile_: bool, steps: int, warmup: int, batch: int) -> float:
    torch.manual_seed(0)
    model = gan.GAN(gcfg).to(device)
    model.load_state_dict(state)
    if tuned:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model.generator.compile()
        model.discriminator.compile()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss_fn = generative.gan_loss(cfg)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if tuned else contextlib.nullcontext()
    g = torch.Generator().manual_seed(0)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        idx = torch.randint(0, len(x), (batch,), generator=g).to(device)
        xb = x[idx].contiguous(memory_format=torch.channels_last) if tuned else x[idx]
        with cast:
            loss, _ = loss_fn(model, (xb, y[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--compile", action="store_true", help="also torch.compile the tuned networks")
    args = p.parse_args()
    device = resolve_device(args.device)
    arrays = data.load("fashion-mnist")
    x = generative.gan_images(arrays["train_x"]).to(device)
    y = torch.from_numpy(arrays["train_y"]).long().to(device)
    cfg = {"conditional": args.conditional, "latent": 100, "loss": "nonsaturating"}
    gcfg = gan.GANConfig(num_classes=10 if args.conditional else 0)
    torch.manual_seed(0)
    state = gan.GAN(gcfg).state_dict()
    common = dict(steps=args.steps, warmup=args.warmup, batch=args.batch)
    tuned = speed(state, gcfg, cfg, x, y, device, True, args.compile, **common)
    plain = speed(state, gcfg, cfg, x, y, device, False, False, **common)
    name = "fashion-cdcgan" if args.conditional else "fashion-dcgan"
    print(f"{name} networks, batch {args.batch}, {machine_name()} ({device.type}), torch {torch.__version__}")
    print(f"{'':<30} {'iterations/s':>8} {'images/s':>10}")
    label = "tuned (bf16, channels_last" + (", compile)" if args.compile else ")")
    for n, r in ((label, tuned), ("plain (fp32 eager)", plain)):
        print(f"{n:<30} {r:>8.1f} {r * args.batch:>10,.0f}")
    print(f"tuned / plain: {tuned / plain:.2f}x")


if __name__ == "__main__":
    main()
