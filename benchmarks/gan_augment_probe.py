"""How gan-augment's share of generated images was chosen: fashion-gan-augment at a few ratios of GAN images to
real ones in a batch (0: the labelled images alone), 30 labelled images per class, one seed, judged on the
validation images only.

    python benchmarks/gan_augment_probe.py                        # generated 0, 0.5, 1, 2
    python benchmarks/gan_augment_probe.py --labels 10 --out runs/probe

The GAN is the experiment's own (runs/gan-augment/gan-n30-seed0 by default: trained here once, reused by
`pillars experiment gan-augment`). Printed, one JSON line each: the ratio and the validation accuracy at the
end of the run. The runs read their test set at the end, as every run does; the choice is made on the
validation figures. The chosen ratio is `experiments.GAN_GENERATED`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RATIOS = (0.0, 0.5, 1.0, 2.0)


def main() -> None:
    from pillars import experiments
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=30, help="labelled images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/gan-augment-probe")
    ap.add_argument("--gan-dir", default="", help="the GAN's folder (default runs/gan-augment/gan-nN-seedS)")
    args = ap.parse_args()
    gan_dir = args.gan_dir or f"runs/gan-augment/gan-n{args.labels}-seed{args.seed}"
    for ratio in RATIOS:
        run = Path(args.out) / f"n{args.labels}-generated{ratio:g}-seed{args.seed}"
        settings = {"labels_per_class": args.labels, "seed": args.seed, "generated": ratio}
        if ratio:
            settings["gan_dir"] = Path(gan_dir)
        summary = experiments.train_run(experiments.GAN_AUGMENT_TASK, settings, run, log=lambda s: None)
        print(json.dumps({"generated": ratio, "labels_per_class": args.labels,
                          "valid_accuracy": round(summary["valid"]["accuracy"], 4)}), flush=True)


if __name__ == "__main__":
    main()
