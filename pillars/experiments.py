"""Experiments made of several training runs.

    pillars experiment transfer-curve    pretrained vs from-scratch EfficientNet-Lite0 against labels/class
    pillars experiment long-lag          LSTM vs tanh RNN on the adding problem against the time lag

Each run is an ordinary run folder under the experiment's folder; a finished run is reused and an
interrupted one resumed (`pillars.runs.train_or_reuse`), so an experiment can be stopped and started again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pillars import runs, train
from pillars.config import write_text_atomic
from pillars.plots import finish_line_plot, pyplot
from pillars.weights import checkpoints


def train_run(task: str, overrides: dict, run_dir: Path, log=print) -> dict:
    """One run of an experiment, trained, resumed or reused by the run lifecycle; a folder made with other
    settings is an error, not a result to reuse."""
    cfg = train.resolve_config(task, overrides={k: str(v) for k, v in overrides.items()})
    if not runs.is_finished(run_dir):
        log(f"{'resuming' if checkpoints(run_dir) else 'training'} {run_dir.name}")
    return runs.train_or_reuse(task, cfg, run_dir, log=log, progress=False,
                               other_settings_hint="give the experiment another --out folder, or delete that run "
                                                   "folder to train it again")


def transfer_curve(out: Path, labels=(10, 30, 100), seeds=(0, 1, 2), extra: dict | None = None, log=print) -> dict:
    """Test accuracy of fashion-transfer, pretrained and from scratch, for each labels-per-class count
    and seed; plots the mean with the standard deviation over seeds as error bars."""
    results: dict[str, dict[int, list[float]]] = {"pretrained": {}, "scratch": {}}
    for n in labels:
        for start in ("pretrained", "scratch"):
            for seed in seeds:
                overrides = {**(extra or {}), "labels_per_class": n, "pretrained": start == "pretrained",
                             "seed": seed}
                summary = train_run("fashion-transfer", overrides, out / f"n{n}-{start}-seed{seed}", log)
                if summary.get("status") != "finished":
                    log("stopped: run the same command again to continue where it stopped")
                    return {}
                results[start].setdefault(n, []).append(summary["final"]["accuracy"])
    table = {start: {n: {"mean": float(np.mean(a)), "std": float(np.std(a)), "runs": a} for n, a in r.items()}
             for start, r in results.items()}
    write_text_atomic(out / "transfer_curve.json", json.dumps(table, indent=2) + "\n")
    plot_transfer_curve(table, out / "transfer_curve.png")
    return table


def plot_transfer_curve(table: dict, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    for start, style in (("pretrained", "o-"), ("scratch", "s--")):
        ns = sorted(table[start])
        ax.errorbar(ns, [100 * table[start][n]["mean"] for n in ns], yerr=[100 * table[start][n]["std"] for n in ns],
                    fmt=style, capsize=4,
                    label=f"EfficientNet-Lite0, {'ImageNet weights' if start == 'pretrained' else 'from scratch'}")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted(table["pretrained"]), [str(n) for n in sorted(table["pretrained"])])
    finish_line_plot(fig, ax, path, "transfer learning: a pretrained network needs far fewer labels",
                     "labelled training images per class", "Fashion-MNIST test accuracy (%)")


def long_lag(out: Path, lags=(25, 50, 100, 200), cells=("lstm", "rnn"), seeds=(0,), extra: dict | None = None,
             log=print) -> dict:
    """Success rate (absolute error < 0.04) on the adding problem against the sequence length, for the
    LSTM and the tanh RNN trained with the same budget: the 1997 paper's long-time-lag claim."""
    results: dict[str, dict[int, list[float]]] = {c: {} for c in cells}
    for lag in lags:
        for cell in cells:
            for seed in seeds:
                summary = train_run("adding-problem", {**(extra or {}), "lag": lag, "cell": cell, "seed": seed},
                                    out / f"{cell}-lag{lag}-seed{seed}", log)
                if summary.get("status") != "finished":
                    log("stopped: run the same command again to continue where it stopped")
                    return {}
                results[cell].setdefault(lag, []).append(summary["final"]["success"])
    table = {c: {lag: {"mean": float(np.mean(a)), "runs": a} for lag, a in r.items()} for c, r in results.items()}
    write_text_atomic(out / "long_lag.json", json.dumps(table, indent=2) + "\n")
    plot_long_lag(table, lags, cells, out / "long_lag.png")
    return table


def plot_long_lag(table: dict, lags, cells, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    names = {"lstm": "LSTM", "rnn": "tanh RNN"}
    for cell, style in zip(cells, ("o-", "s--")):
        ax.plot(lags, [100 * table[cell][lag]["mean"] for lag in lags], style, label=names.get(cell, cell))
    ax.axhline(100 * chance_success(), color="grey", lw=0.8, ls=":", label="always answering 1")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(lags), [str(x) for x in lags])
    finish_line_plot(fig, ax, path, "the adding problem: memory across long time lags",
                     "sequence length T (one marked value in each half)",
                     "test sequences solved, |error| < 0.04 (%)")


def chance_success(tolerance: float = 0.04) -> float:
    """Fraction solved by always answering 1: P(|a + b - 1| < tol) for a, b uniform on [0, 1]."""
    return 1 - (1 - tolerance) ** 2


EXPERIMENTS = {"transfer-curve": transfer_curve, "long-lag": long_lag}
