"""Experiments made of several training runs.

    pillars experiment transfer-curve    pretrained vs from-scratch EfficientNet-Lite0 against labels/class
    pillars experiment long-lag          LSTM vs tanh RNN on the adding problem against the time lag
    pillars experiment translate-race    French to English: validation BLEU of the attention LSTM and the
                                         Transformer against minutes of training

Each run is an ordinary run folder under the experiment's folder; a finished run is reused and an
interrupted one resumed (`pillars.runs.train_or_reuse`), so an experiment can be stopped and started again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pillars import runs, train
from pillars.config import ConfigError, write_text_atomic
from pillars.plots import finish_line_plot, pyplot
from pillars.tasks import translation
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


RACE_TASK = "bible-fr-en-translate"
RACE_MARKS = (10, 20, 30)   # minutes of training at which the race is read
# The race's runs: the task's defaults (the attention LSTM) and the Transformer at the same 2 + 2 layers and
# width (translation.FR_EN_TRANSFORMER); each with as many steps as about 30 minutes of training take on a
# 2-core CPU, the whole validation set scored every tenth of them.
RACE_CONFIGS = {"lstm": {}, "transformer": translation.FR_EN_TRANSFORMER}
MODEL_NAMES = {"lstm": "LSTM with attention", "transformer": "Transformer"}


def translate_race(out: Path, marks=RACE_MARKS, models=("lstm", "transformer"), extra: dict | None = None,
                   log=print) -> dict:
    """The reader who goes word by word against the panel that reads everything at once: validation BLEU
    (greedy, every validation verse) against minutes of training (evaluations excluded) for the attention
    LSTM and the Transformer on the same French-English pairs and machine, read at `marks` minutes; and
    both models' cross-attention over one held-out verse, side by side."""
    if "model" in (extra or {}):
        raise ConfigError(f"the translate-race trains both models ({', '.join(models)}) itself: drop --set model")
    curves, summaries = {}, {}
    for model in models:
        overrides = {**RACE_CONFIGS[model], **(extra or {}), "model": model}
        steps = int(train.resolve_config(RACE_TASK, overrides={k: str(v) for k, v in overrides.items()})["max_steps"])
        overrides = {"eval_every": max(1, steps // 10), "eval_batches": 0, **overrides}
        summary = train_run(RACE_TASK, overrides, out / model, log)
        if summary.get("status") != "finished":
            log("stopped: run the same command again to continue where it stopped")
            return {}
        summaries[model] = summary
        curves[model] = [(row["train_time_s"] / 60, row["bleu"]) for row in runs.read_metrics(out / model)
                         if row["split"] == "valid" and "bleu" in row]
    table = {"marks_min": list(marks), "models": {}}
    for model in models:
        s = summaries[model]
        table["models"][model] = {
            "name": MODEL_NAMES[model], "bleu_at": {str(m): bleu_at(curves[model], m) for m in marks},
            "curve": [[round(t, 3), b] for t, b in curves[model]], "train_min": round(s["train_time_s"] / 60, 2),
            "steps": s["steps"], "epochs": s["epochs"], "parameters": s["parameters"],
            "pairs_per_s": s["samples_per_s"], "tokens_per_s": s.get("tokens_per_s"), "machine": s["machine"]}
    table["leader_at"] = {str(m): leader({model: table["models"][model]["bleu_at"][str(m)] for model in models})
                          for m in marks}
    plot_translate_race(table, out / "translate_race.png")
    table["attention"] = race_attention(out, models, out / "translate_race_attention.png")
    write_text_atomic(out / "translate_race.json", json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    return table


def bleu_at(curve: list[tuple[float, float]], minutes: float) -> float | None:
    """The validation BLEU of the last evaluation within `minutes` of training (None before the first)."""
    within = [bleu for t, bleu in curve if t <= minutes]
    return within[-1] if within else None


def leader(scores: dict[str, float | None]) -> str:
    """The model with the higher score, "tie" when equal, "-" while any has none."""
    if any(v is None for v in scores.values()):
        return "-"
    best = max(scores.values())
    ahead = [m for m, v in scores.items() if v == best]
    return ahead[0] if len(ahead) == 1 else "tie"


def plot_translate_race(table: dict, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(6.0, 3.8))
    for (model, row), style in zip(table["models"].items(), ("o-", "s--")):
        t, b = zip(*row["curve"])
        ax.plot(t, b, style, ms=3, label=f"{row['name']} ({row['parameters'] / 1e6:.1f}M parameters)")
    for m in table["marks_min"]:
        ax.axvline(m, color="grey", lw=0.8, ls=":")
    finish_line_plot(fig, ax, path, "French to English on one machine: BLEU against training time",
                     "minutes of training (evaluations excluded)", "validation BLEU (greedy)")


def race_attention(out: Path, models, path: Path) -> dict:
    """Both trained models' cross-attention over the same held-out verse, side by side."""
    from pillars import explain
    panels, said = [], {}
    for model in models:
        job = runs.load(out / model).job
        output, weights, src_pieces, tgt_pieces = explain.translation_attention(job)
        said[model] = {"source": job.example_source, "translation": output}
        panels.append((MODEL_NAMES[model], weights, src_pieces, tgt_pieces))
    explain.plot_cross_attentions(panels, path)
    return said


EXPERIMENTS = {"transfer-curve": transfer_curve, "long-lag": long_lag, "translate-race": translate_race}
