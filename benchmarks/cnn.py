"""fashion-resnet: the tuned configuration against the same model in a plain fp32 eager loop.

    python benchmarks/cnn.py                 # both, one after the other, on this machine
    python benchmarks/cnn.py --epochs 4      # shorter
    python benchmarks/cnn.py --config configs/fashion-resnet-fast.toml   # the 4-minute configuration

Both runs go through the project's own training loop with the same seed, data order, model and schedule;
they differ only in the speed settings: the tuned one uses the task's defaults (bf16 autocast,
channels_last) and optionally --compile; the plain one uses fp32, the default memory format and no
compile. Printed: training samples/s (evaluation excluded), time to 91% and 93% validation accuracy (the
periodic evaluations read the validation set; the test set is read once, at the end), final test accuracy,
and the tuned/plain ratios. Evaluation runs every `--eval-every` steps and is not counted.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pillars import runs, train  # noqa: E402
from pillars.devices import machine_name  # noqa: E402


def time_to(lines: list[dict], threshold: float) -> float | None:
    for ln in lines:
        if ln["split"] == "valid" and ln["accuracy"] >= threshold:
            return ln["train_time_s"]
    return None


def run(name: str, config: str | None, overrides: dict, out: Path) -> dict:
    cfg = train.resolve_config("fashion-resnet", config, overrides={k: str(v) for k, v in overrides.items()})
    run_dir = out / name
    run_dir.mkdir(parents=True)
    summary = runs.start("fashion-resnet", cfg, run_dir, progress=False)
    lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"name": name, "epochs": cfg["epochs"], "samples_per_s": summary["samples_per_s"],
            "t91": time_to(lines, 0.91), "t93": time_to(lines, 0.93), "final": summary["final"]["accuracy"],
            "train_time_s": summary["train_time_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a TOML file of fashion-resnet settings, as `pillars train --config` takes")
    p.add_argument("--epochs", type=float, help="default: 10, or the --config file's")
    p.add_argument("--eval-every", type=int, default=117, help="steps between evaluations (half an epoch)")
    p.add_argument("--compile", action="store_true", help="also torch.compile the tuned run")
    p.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    common = {"eval_every": args.eval_every, "checkpoint_every": 10**9}
    if args.epochs or not args.config:   # a --config file's own length stands unless --epochs is given
        common["epochs"] = args.epochs or 10
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        tuned = run("tuned", args.config, {**common, "compile": args.compile}, out)
        plain = run("plain", args.config, {**common, "precision": "32", "channels_last": False}, out)
    print(f"\nfashion-resnet{', ' + args.config if args.config else ''}, {tuned['epochs']:g} epochs, "
          f"{machine_name()}")
    print(f"{'':>8} {'samples/s':>10} {'to 91%':>8} {'to 93%':>8} {'test':>7}   (times: validation accuracy)")
    for r in (tuned, plain):
        t91 = f"{r['t91']:.0f} s" if r["t91"] else "-"
        t93 = f"{r['t93']:.0f} s" if r["t93"] else "-"
        print(f"{r['name']:>8} {r['samples_per_s']:>10,.0f} {t91:>8} {t93:>8} {r['final']:>7.2%}")
    print(f"speed-up of tuned over plain: {tuned['samples_per_s'] / plain['samples_per_s']:.2f}x samples/s", end="")
    if tuned["t93"] and plain["t93"]:
        print(f", {plain['t93'] / tuned['t93']:.2f}x time to 93%", end="")
    print()


if __name__ == "__main__":
    main()
