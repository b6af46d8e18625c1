"""The scale of fid_fashion: Fréchet distances of REAL images, changed in small ways, to the real test set.

    python benchmarks/fid_scale.py

fid_fashion (pillars.tasks.generative) measures generated images in the 128-unit hidden layer of the
project's own Fashion-MNIST classifier. Its floor is the distance between 10,000 real training images and
the 10,000 test images. This script puts the GAN figures in scale: the same 10,000 training images shifted
by one pixel, mirrored, blurred, with a little noise, with fewer grey levels, or with a quarter of one
class missing, each measured against the test set exactly as a generator's samples are. A generator can
only come near the floor if its images are closer to the real ones than these small changes are.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pillars import data, metrics, runs  # noqa: E402
from pillars.data import transforms  # noqa: E402
from pillars.tasks.generative import classifier_features, classifier_requirement, gan_images  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000, help="training images measured (default 10,000)")
    args = p.parse_args()
    device = torch.device("cpu")
    arrays = data.load("fashion-mnist")
    run = runs.load(runs.ensure(classifier_requirement(), device.type), device.type)   # trained once, cached
    classifier, inputs = run.job.model.eval(), run.job.inputs
    test = gan_images(arrays["test_x"])
    real = gan_images(arrays["train_x"][:args.n])
    labels = torch.from_numpy(arrays["train_y"][:args.n])

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([classifier_features(classifier, inputs, b)[0] for b in x.split(1000)])

    reference = metrics.feature_gaussian(features(test))

    def fid(x: torch.Tensor) -> float:
        return metrics.frechet_distance(*metrics.feature_gaussian(features(x)), *reference)

    g = torch.Generator().manual_seed(0)
    first_class = (labels == 0).nonzero().flatten()
    keep = torch.ones(len(real), dtype=torch.bool)
    keep[first_class[:len(first_class) // 4]] = False
    changes = {
        "real training images (the floor)": real,
        "16 grey levels instead of 256": ((real + 1) * 7.5).round() / 7.5 - 1,
        "a quarter of one class (t-shirt/top) missing": real[keep],
        "shifted right by 1 pixel": transforms.shift(real, 1),
        "Gaussian noise, 5% of the pixel range": (real + 0.1 * torch.randn(real.shape, generator=g)).clamp(-1, 1),
        "3x3 box blur": F.avg_pool2d(F.pad(real, (1, 1, 1, 1), value=-1), 3, 1),
        "mirrored left to right": real.flip(-1),
    }
    floor = None
    print(f"{'real images, changed':<48} {'fid_fashion':>11} {'x floor':>8}")
    for name, x in changes.items():
        value = fid(x)
        floor = floor or value
        print(f"{name:<48} {value:>11.2f} {value / floor:>8.1f}")


if __name__ == "__main__":
    main()
