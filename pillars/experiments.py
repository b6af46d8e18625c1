"""Experiments made of several training runs.

    pillars experiment transfer-curve    pretrained vs from-scratch EfficientNet-Lite0 against labels/class
    pillars experiment long-lag          LSTM vs tanh RNN on the adding problem against the time lag
    pillars experiment text-transfer     movie-review accuracy against labelled snippets: the text-mlm encoder
                                         fine-tuned against the same network from scratch, beside TF-IDF
    pillars experiment gan-augment       Fashion-MNIST accuracy against labels per class: the labelled images
                                         alone, with classic augmentation, with a conditional GAN's images
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
    settings is an error, not a result to reuse. A run stopped before it finished (Ctrl-C) says how to go on;
    its summary's status is then not "finished", and the experiment stops."""
    cfg = train.resolve_config(task, overrides={k: str(v) for k, v in overrides.items()})
    if not runs.is_finished(run_dir):
        log(f"{'resuming' if checkpoints(run_dir) else 'training'} {run_dir.name}")
    summary = runs.train_or_reuse(task, cfg, run_dir, log=log, progress=False,
                                  other_settings_hint="give the experiment another --out folder, or delete that run "
                                                      "folder to train it again")
    if summary.get("status") != "finished":
        log("stopped: run the same command again to continue where it stopped")
    return summary


def refuse_keys(experiment: str, extra: dict | None, keys: tuple[str, ...]) -> None:
    """A ConfigError for a --set key that the experiment sets itself for each run."""
    for key in keys:
        if key in (extra or {}):
            raise ConfigError(f"{experiment} sets {key} itself for each run: drop --set {key}")


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
                    return {}
                results[start].setdefault(n, []).append(summary["final"]["accuracy"])
    table = mean_std(results)
    write_text_atomic(out / "transfer_curve.json", json.dumps(table, indent=2) + "\n")
    plot_transfer_curve(table, out / "transfer_curve.png")
    return table


def plot_transfer_curve(table: dict, path: Path) -> None:
    plot_mean_std(table, [("pretrained", "o-", "EfficientNet-Lite0, ImageNet weights"),
                          ("scratch", "s--", "EfficientNet-Lite0, from scratch")],
                  path, "transfer learning: a pretrained network needs far fewer labels",
                  "labelled training images per class", "Fashion-MNIST test accuracy (%)")


def plot_mean_std(table: dict, curves: list[tuple[str, str, str]], path: Path, title: str, xlabel: str, ylabel: str,
                  x_of=lambda n: n, chance: tuple[float, str] | None = None) -> None:
    """Accuracy (%) against a count on a log axis: one curve per (key of `table`, style, label), each point the
    mean over seeds with their standard deviation as error bars; `x_of` places a count (0: all)."""
    fig, ax = pyplot().subplots(figsize=(5.8, 3.9))
    for key, style, label in curves:
        ns = sorted(table[key], key=x_of)
        ax.errorbar([x_of(n) for n in ns], [100 * table[key][n]["mean"] for n in ns],
                    yerr=[100 * table[key][n]["std"] for n in ns], fmt=style, capsize=4, label=label)
    if chance:
        ax.axhline(100 * chance[0], color="grey", lw=0.8, ls=":", label=chance[1])
    ax.set_xscale("log")
    ax.minorticks_off()
    ticks = sorted(x_of(n) for n in table[curves[0][0]])
    ax.set_xticks(ticks, [f"{n:,}" for n in ticks])
    finish_line_plot(fig, ax, path, title, xlabel, ylabel)


def mean_std(results: dict[str, dict[int, list[float]]]) -> dict:
    """{arm: {n: [figure of each seed]}} -> {arm: {n: {"mean", "std" (over seeds), "runs"}}}."""
    return {arm: {n: {"mean": float(np.mean(a)), "std": float(np.std(a)), "runs": a} for n, a in r.items()}
            for arm, r in results.items()}


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


TEXT_TRANSFER_TASK = "movie-sentiment-transfer"
TEXT_LABELS = (100, 300, 1000, 0)    # labelled training snippets (0: all 8,454)
# each arm's learning rate: the best final validation accuracy at 300 labels (benchmarks/text_transfer_probe.py:
# pretrained 1e-4 / 3e-4 / 1e-3 -> 60.2 / 62.6 / 61.1%, in-domain 65.9 / 63.9 / 63.9%, scratch 3e-4 / 1e-3 / 3e-3
# -> 61.6 / 61.1 / 60.9%)
TEXT_TRANSFER_LR = {"pretrained": 3e-4, "in-domain": 1e-4, "scratch": 3e-4}
# the arms: text-mlm's encoder; text-mlm continued on the snippets' own text (no label read); random weights
TEXT_TRANSFER_ARMS = {"pretrained": {"pretrained": True}, "in-domain": {"encoder": "text-mlm-reviews"},
                      "scratch": {"pretrained": False}}
TEXT_MIN_STEPS = 150                 # a few labels still get this many steps of 32 (4 epochs of all of them: 1,057)


def text_transfer_steps(labelled: int, batch_size: int = 32, available: int = 8454) -> int:
    """Optimizer steps of a fine-tuning run: 4 epochs of the labelled snippets, at least TEXT_MIN_STEPS."""
    return max(TEXT_MIN_STEPS, -(-4 * (labelled or available) // batch_size))


def text_transfer(out: Path, labels=TEXT_LABELS, seeds=(0, 1, 2), extra: dict | None = None, log=print) -> dict:
    """Test accuracy on the movie-review snippets of the text-mlm encoder fine-tuned on N labelled snippets
    (half of each class, drawn with the seed), of the same encoder first adapted to the snippets' text (text-mlm
    continued on it, no label read), and of the same network, tokens and steps from random weights, beside
    TF-IDF + logistic regression trained on the same N snippets and on all of them; the mean and standard
    deviation over seeds, plotted against N: the text twin of transfer-curve."""
    refuse_keys("text-transfer", extra, ("pretrained", "encoder", "labelled", "seed"))
    results: dict[str, dict[int, list[float]]] = {**{arm: {} for arm in TEXT_TRANSFER_ARMS}, "tfidf": {}}
    tfidf_all = None
    for n in labels:
        for start, settings in TEXT_TRANSFER_ARMS.items():
            for seed in seeds:
                overrides = {"lr": TEXT_TRANSFER_LR[start], "max_steps": text_transfer_steps(n),
                             "eval_every": max(1, text_transfer_steps(n) // 5), **(extra or {}), **settings,
                             "labelled": n, "seed": seed}
                summary = train_run(TEXT_TRANSFER_TASK, overrides, out / f"n{n or 'all'}-{start}-seed{seed}", log)
                if summary.get("status") != "finished":
                    return {}
                results[start].setdefault(n, []).append(summary["final"]["accuracy"])
                b = summary.get("baselines", {})
                tfidf_all = b.get("tfidf_logreg_accuracy", tfidf_all)
                if start == "pretrained":
                    results["tfidf"].setdefault(n, []).append(b.get("tfidf_logreg_same_labels_accuracy",
                                                                    b.get("tfidf_logreg_accuracy")))
    table = mean_std(results)
    table["tfidf_all"] = tfidf_all
    table["all"] = 8454
    write_text_atomic(out / "text_transfer.json", json.dumps(table, indent=2) + "\n")
    plot_text_transfer(table, out / "text_transfer.png")
    return table


def plot_text_transfer(table: dict, path: Path) -> None:
    plot_mean_std(table, [("pretrained", "o-", "Transformer encoder, pretrained (text-mlm)"),
                          ("in-domain", "D-", "pretrained, then on the snippets' own text"),
                          ("scratch", "s--", "the same network from scratch"),
                          ("tfidf", "^:", "TF-IDF + logistic regression, same labels")],
                  path, "pretrained on unlabelled text, or from scratch: accuracy against labels",
                  "labelled training snippets", "movie-review test accuracy (%)",
                  x_of=lambda n: n or table["all"], chance=(0.5, "chance (two classes)"))


GAN_AUGMENT_TASK = "fashion-gan-augment"
GAN_AUGMENT_LABELS = (10, 30, 100)   # labelled training images per class, as transfer-curve
GAN_GENERATED = 0.5                  # GAN images per real one in a batch: chosen on validation at 30 labels a
#                                      class (benchmarks/gan_augment_probe.py)
# the arms: the labelled images alone; with classic augmentation (fashion-transfer's: a random crop of the image
# padded by 2 pixels, a horizontal flip); with images of the conditional GAN trained on the same labelled images
GAN_AUGMENT_ARMS = {"real": {}, "classic": {"crop_pad": 2, "flip": True}, "gan": {"generated": GAN_GENERATED}}
GAN_AUGMENT_NAMES = {"real": "the labelled images alone", "classic": "+ classic augmentation (crop, flip)",
                     "gan": "+ images of a conditional GAN trained on them"}


def gan_augment(out: Path, labels=GAN_AUGMENT_LABELS, seeds=(0, 1, 2), extra: dict | None = None,
                log=print) -> dict:
    """Fashion-MNIST test accuracy of fashion-cnn's network trained on N labelled images per class: alone,
    with classic augmentation, and with images of a conditional GAN trained on those N images per class only
    (gan-n{N}-seed{S}, trained first); the mean and standard deviation over seeds, plotted against N. The
    GANs' own figures (fid_fashion, the class asked for) are kept beside."""
    refuse_keys("gan-augment", extra, ("labels_per_class", "seed", "generated", "gan_dir", "crop_pad", "flip",
                                       "valid_fraction"))
    results: dict[str, dict[int, list[float]]] = {arm: {} for arm in GAN_AUGMENT_ARMS}
    gans: dict[str, dict[int, list[float]]] = {"class_accuracy": {}, "fid_fashion": {}}
    for n in labels:
        for seed in seeds:
            for arm, settings in GAN_AUGMENT_ARMS.items():
                gan_dir = out / f"gan-n{n}-seed{seed}"
                overrides = {**(extra or {}), **settings, "labels_per_class": n, "seed": seed,
                             **({"gan_dir": gan_dir} if settings.get("generated") else {})}
                summary = train_run(GAN_AUGMENT_TASK, overrides, out / f"n{n}-{arm}-seed{seed}", log)
                if summary.get("status") != "finished":
                    return {}
                results[arm].setdefault(n, []).append(summary["final"]["accuracy"])
                if settings.get("generated"):
                    if not runs.is_finished(gan_dir):
                        raise ConfigError(f"{gan_dir}, the GAN behind {out / f'n{n}-{arm}-seed{seed}'}, is missing or "
                                          "unfinished: delete that run folder and the command trains both again")
                    final = runs.summary_of(gan_dir)["final"]
                    for key in gans:
                        gans[key].setdefault(n, []).append(final[key])
    table = {**mean_std(results), "gan_quality": mean_std(gans)}
    write_text_atomic(out / "gan_augment.json", json.dumps(table, indent=2) + "\n")
    plot_mean_std(table, [(arm, style, GAN_AUGMENT_NAMES[arm])
                          for arm, style in zip(GAN_AUGMENT_ARMS, ("s--", "^:", "o-"))],
                  out / "gan_augment.png", "a GAN as data augmentation: accuracy against labelled images",
                  "labelled training images per class", "Fashion-MNIST test accuracy (%)")
    return table


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


EXPERIMENTS = {"transfer-curve": transfer_curve, "text-transfer": text_transfer, "gan-augment": gan_augment,
               "long-lag": long_lag, "translate-race": translate_race}
