"""How text-transfer's learning rates were chosen: each arm (the text-mlm encoder fine-tuned, the same encoder
adapted to the snippets' text first, the same network from scratch) at a few learning rates, 300 labelled
snippets, one seed, judged on the validation snippets only.

    python benchmarks/text_transfer_probe.py                     # pretrained and in-domain 1e-4, 3e-4, 1e-3;
                                                                 # scratch 3e-4, 1e-3, 3e-3
    python benchmarks/text_transfer_probe.py --arms in-domain
    python benchmarks/text_transfer_probe.py --labelled 100 --out runs/probe

Each run is an ordinary `movie-sentiment-transfer` run with the experiment's steps for that many labels
(`experiments.text_transfer_steps`) and five validations; printed, one JSON line each: the arm, the learning
rate, the last and the best validation accuracy. The runs read their test set at the end, as every run does;
the choice is made on the validation figures. The chosen rates are `experiments.TEXT_TRANSFER_LR`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RATES = {"pretrained": (1e-4, 3e-4, 1e-3), "in-domain": (1e-4, 3e-4, 1e-3), "scratch": (3e-4, 1e-3, 3e-3)}


def main() -> None:
    from pillars import experiments, runs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/text-transfer-probe")
    ap.add_argument("--arms", default=",".join(RATES), help="comma-separated, of " + ", ".join(RATES))
    args = ap.parse_args()
    steps = experiments.text_transfer_steps(args.labelled)
    for arm in args.arms.split(","):
        for lr in RATES[arm]:
            run = Path(args.out) / f"n{args.labelled}-{arm}-lr{lr:g}-seed{args.seed}"
            experiments.train_run(experiments.TEXT_TRANSFER_TASK, {
                **experiments.TEXT_TRANSFER_ARMS[arm], "labelled": args.labelled, "lr": lr, "seed": args.seed,
                "max_steps": steps, "eval_every": max(1, steps // 5)}, run, log=lambda s: None)
            valid = [r["accuracy"] for r in runs.read_metrics(run) if r["split"] == "valid"]
            print(json.dumps({"arm": arm, "lr": lr, "labelled": args.labelled, "valid_last": round(valid[-1], 4),
                              "valid_best": round(max(valid), 4)}), flush=True)


if __name__ == "__main__":
    main()
