"""The tour: one command trains a network of each of the four families on real data, runs the experiments
that show what each one learned, and writes a self-contained report.

    pillars tour                  15-30 minutes on 2 CPU cores (--budget MINUTES to change it)
    pillars tour --full           the README's configurations (hours on a CPU; a GPU is the place for it)

Each stage is an ordinary run folder under the tour's folder (`runs/tour/cnn`, ...): a finished stage is
reused and an interrupted one resumed (`pillars.runs`), so the tour can be stopped with Ctrl-C and started
again. The budget sets how long each network trains (its epochs or steps, in proportion to the budget); the
experiments after training take about the same time whatever the budget. What the tour shows of a run (its
experiments and samples, its headline and baselines, the figures of its report) is its task's family's
(`pillars.tasks.Family`): the tour itself knows no model family.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pillars import runs, tasks, train
from pillars.config import ConfigError, write_text_atomic
from pillars.devices import machine_name
from pillars.plots import pyplot
from pillars.tasks.translation import FR_EN_TRANSFORMER

DEFAULT_BUDGET = 15.0   # minutes


@dataclass(frozen=True)
class Stage:
    key: str            # the run folder under the tour's folder
    pillar: str
    task: str
    about: str          # what the family is, in two sentences
    quick: dict         # the task's changes at the default budget
    scaled: str         # the key of `quick` that the budget scales (epochs or max_steps)
    train_s: float      # seconds of training at the default budget on the reference machine (2 CPU cores)
    explain_s: float    # seconds of the experiments after training
    datasets: tuple[str, ...]
    full_s: float = 0   # seconds of training with --full on the reference machine (for the ETA)
    full: dict = field(default_factory=dict)   # the task's changes for --full (the README's configuration)
    full_only: bool = False
    short: dict = field(default_factory=dict)  # more changes for a short tour (`light`): a lighter validation


STAGES = (
    Stage("cnn", "Convolutional networks", "fashion-resnet",
          "A convolutional network slides small learned filters over the image, so a pattern is recognised "
          "wherever it sits, and stacks them so that later layers combine edges into parts and parts into "
          "objects (LeCun et al. 1998; He et al. 2016 for the residual connections).",
          quick={"epochs": 3.0}, scaled="epochs", train_s=190, explain_s=30, datasets=("fashion-mnist",),
          full_s=1500, short={"eval_batches": 10}),   # 2,000 of the 6,000 held-out images
    Stage("detect", "Convolutional networks: detection", "tree-detect",
          "The same convolutions, asked where rather than what: FCOS (Tian et al. 2019) predicts at every "
          "location of a feature pyramid whether a tree crown is there and how far its box reaches, here on "
          "an ImageNet-pretrained EfficientNet-Lite0, in aerial photographs of Yellowstone with regions held out.",
          quick={}, scaled="max_steps", train_s=0, explain_s=20, datasets=("neon-trees", "efficientnet-lite0-imagenet"),
          full_only=True, full_s=900),
    Stage("segment", "Convolutional networks: medical images", "brain-segment",
          "A U-Net (Ronneberger et al. 2015) labels every pixel: a contracting path of convolutions and poolings "
          "sees the context, an expanding path with skip connections puts the labels back in place. Here it "
          "outlines the brain in MRI slices of one subject (Colin27), on slabs held out with gaps, against a "
          "baseline that copies the nearest training slice's labels.",
          quick={}, scaled="epochs", train_s=0, explain_s=10, datasets=("colin27",), full_only=True, full_s=800),
    Stage("lstm", "Recurrent networks (LSTM)", "sotu-char-lstm",
          "A recurrent network reads a sequence one token at a time and carries a state from step to step; "
          "the LSTM's gated cell (Hochreiter & Schmidhuber 1997) lets that state keep context for long "
          "stretches. Here it reads the State of the Union addresses character by character and predicts "
          "the next one.",
          quick={"max_steps": 900, "eval_batches": 16}, scaled="max_steps",
          train_s=170, explain_s=30, datasets=("sotu",), full_s=560, short={"eval_batches": 4}),
    Stage("speech", "Recurrent networks: speech", "spoken-digits-lstm",
          "The same LSTM cell reads a spoken word as a sequence of short sound frames (13 mel-frequency "
          "cepstral coefficients every few milliseconds) and names the digit, beside the recognisers that came "
          "before it: nearest neighbour under dynamic time warping, and one hidden Markov model per word.",
          quick={}, scaled="epochs", train_s=0, explain_s=5, datasets=("spoken-digits",), full_only=True,
          full_s=100),
    Stage("stock-return", "Recurrent networks: forecasting returns", "stock-forecast",
          "An LSTM reads the S&P 500's past daily returns and forecasts tomorrow's, scored on the test years "
          "against the random walk (tomorrow's price is today's) with a Diebold-Mariano test: what a price "
          "forecaster must beat before its forecast says anything.",
          quick={}, scaled="epochs", train_s=0, explain_s=5, datasets=("stock-indices",), full_only=True,
          full_s=15, full={"series": "sp500", "target": "return"}),
    Stage("stock-volatility", "Recurrent networks: forecasting volatility", "stock-forecast",
          "The same LSTM forecasts the S&P 500's realised variance over the next week, against GARCH(1,1) "
          "fitted on the training years: how much prices will move is forecastable where their direction "
          "is not.",
          quick={}, scaled="epochs", train_s=0, explain_s=5, datasets=("stock-indices",), full_only=True,
          full_s=15, full={"series": "sp500", "target": "volatility"}),
    Stage("gpt", "Transformers", "sotu-char-gpt",
          "A Transformer (Vaswani et al. 2017) lets every position read every earlier position directly "
          "through attention, instead of through a chain of states. This small GPT reads the same "
          "characters as the LSTM, so the two compare in bits per character.",
          quick={"max_steps": 700, "width": 128, "context": 128, "warmup_steps": 50, "dropout": 0.0,
                 "eval_batches": 16}, scaled="max_steps", train_s=170, explain_s=20, datasets=("sotu",),
          full_s=600, short={"eval_batches": 4}),
    Stage("translate-lstm", "Recurrent networks: translation", "bible-fr-en-translate",
          "An encoder LSTM reads a French verse both ways and a decoder LSTM writes the English one word by "
          "word, looking back over the French at each word through attention (Bahdanau et al. 2015; Luong "
          "et al. 2015): the sequence-to-sequence model that first made neural translation work.",
          quick={}, scaled="max_steps", train_s=0, explain_s=30, datasets=("bible-fr-en",), full_only=True,
          full_s=1800),
    Stage("translate", "Transformers: translation", "bible-fr-en-translate",
          "An encoder-decoder Transformer translates the same French verses into English in the same half hour; "
          "the decoder's cross-attention reads the French words each English word comes from.",
          quick={}, scaled="max_steps", train_s=0, explain_s=30, datasets=("bible-fr-en",), full_only=True,
          full_s=1800, full=dict(FR_EN_TRANSFORMER)),
    Stage("gan", "GANs", "fashion-dcgan",
          "A generative adversarial network (Goodfellow et al. 2014) trains a forger, the generator, against "
          "a detective, the discriminator, until the forgeries are hard to tell from real images. This "
          "DCGAN (Radford et al. 2015) draws Fashion-MNIST articles from random noise.",
          quick={"epochs": 3.0, "fid_samples": 500}, scaled="epochs", train_s=110 + 150, explain_s=15,
          datasets=("fashion-mnist", "inception-fid"), full_s=430 + 1000, short={"eval_batches": 2, "fid_samples": 16}),
)

CLASSIFIER_S = 80   # the GAN metric's classifier, trained once and cached
TRANSFER_S = 800    # --full: the transfer curve (18 short fine-tuning runs)
TEXT_TRANSFER_S = 4000   # --full: text-mlm pretrained once and adapted to the reviews, then 36 fine-tuning runs
GAN_AUGMENT_S = 2400     # --full: 9 small conditional GANs, then 27 short classifier runs


def plan(budget: float = DEFAULT_BUDGET, full: bool = False) -> list[tuple[Stage, dict]]:
    """The stages of a tour with their overrides: at `budget` minutes the scaled key is the quick value
    times budget / 15 (at least a few steps), and the warmup with it; --full takes each task's own defaults. A short tour (`light`)
    validates on part of each held-out set (the test set is still read whole, once, at the end)."""
    if not full and not budget > 0:
        raise ConfigError(f"--budget must be a positive number of minutes, not {budget}")
    out = []
    for stage in STAGES:
        if stage.full_only and not full:
            continue
        if full:
            out.append((stage, dict(stage.full)))
            continue
        overrides = {**stage.quick, **(stage.short if light(budget, full) else {})}
        value = stage.quick[stage.scaled] * budget / DEFAULT_BUDGET
        if stage.scaled == "max_steps":
            overrides["max_steps"] = max(20, int(round(value)))
            overrides["eval_every"] = -(-overrides["max_steps"] // 3)   # three evaluations, the last at the end
        else:
            overrides[stage.scaled] = round(max(0.02, value), 3)
        # the learning-rate warmup is a share of the training, so it scales with it: a short tour that kept
        # the default tour's 200 warmup steps would end its 26 steps at a tenth of the learning rate
        warmup = train.resolve_config(stage.task, overrides={k: str(v) for k, v in stage.quick.items()})["warmup_steps"]
        scaled = int(round(warmup * overrides[stage.scaled] / stage.quick[stage.scaled]))
        if scaled != warmup:
            overrides["warmup_steps"] = scaled
        out.append((stage, overrides))
    return out


def light(budget: float, full: bool) -> bool:
    """Short tours (under 5 minutes) run lighter experiments: fewer shifts, a shorter MLP, fewer positions."""
    return not full and budget < 5


# ----------------------------------------------------------------------------- running it

class Progress:
    """One bar for the whole tour: its unit is a second of the reference machine, so rich's time-remaining
    column is the tour's ETA, corrected by the speed actually seen."""

    def __init__(self, console, total: float, enabled: bool):
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), TextColumn("eta"),
                       TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                       disable=not enabled, transient=False, speed_estimate_period=120)
        self.task = self.bar.add_task("tour", total=total, info="")
        self.done = 0.0

    def stage(self, label: str) -> None:
        self.bar.update(self.task, description=label, info="")

    def within(self, seconds: float, fraction: float, info: str = "") -> None:
        self.bar.update(self.task, completed=self.done + seconds * min(1.0, fraction), info=info)

    def advance(self, seconds: float) -> None:
        self.done += seconds
        self.bar.update(self.task, completed=self.done)


def log_to(console):
    """A plain-text log line on the tour's console (what families and the run lifecycle print)."""
    return lambda text: console.print(text, markup=False, highlight=False)


def train_stage(stage: Stage, overrides: dict, out: Path, progress: Progress, console, device: str,
                full: bool = False) -> dict | None:
    """Train one stage, or reuse or resume it (the run lifecycle); None when it was interrupted."""
    cfg = train.resolve_config(stage.task, overrides={**{k: str(v) for k, v in overrides.items()},
                                                      **({"device": device} if device != "auto" else {})})

    def on_step(step: int, total: int, info: str) -> None:
        progress.within(train_seconds(stage, overrides, full), step / total, info)

    hint = (f"{out} holds a tour started with another --budget or --full. Run it again with the same flags, "
            f"choose another --out, or delete {out}")
    summary = runs.train_or_reuse(stage.task, cfg, out / stage.key, log=log_to(console), other_settings_hint=hint,
                                  progress=False, console=console, on_step=on_step)
    return summary if summary.get("status") == "finished" else None


def train_seconds(stage: Stage, overrides: dict, full: bool) -> float:
    """Expected training seconds of a stage on the reference machine (the unit of the progress bar)."""
    return stage.full_s if full else stage.train_s * _scale(stage, overrides)


def _scale(stage: Stage, overrides: dict) -> float:
    """Training time relative to the default budget's (for the ETA)."""
    if not stage.quick:
        return 1.0
    base = stage.quick[stage.scaled]
    return max(overrides.get(stage.scaled, base), 1e-9) / base


def run_experiments(stage: Stage, out: Path, lighter: bool, console, device: str = "auto") -> dict:
    """The stage's experiments and samples, as its task's family shows them; cached in the run folder."""
    run_dir = out / stage.key
    done = run_dir / "tour.json"
    if done.exists() and done.stat().st_mtime >= (run_dir / "summary.json").stat().st_mtime:
        return json.loads(done.read_text())
    run = runs.load(run_dir, device)
    result = run.task.family.tour(run, log_to(console), light=lighter)
    result["curves"] = "curves.png"
    plot_curves(run_dir, runs.summary_of(run_dir), run_dir / "curves.png")
    write_text_atomic(done, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def plot_curves(run_dir: Path, summary: dict, path: Path) -> None:
    """Training loss (left); the validation metric at each evaluation and the test figure, read once at the
    end (right), against the optimizer step."""
    lines = runs.read_metrics(run_dir)
    metric = summary["metric"]
    points = {split: [(r["step"], r[key]) for r in lines if r["split"] == split and key in r]
              for split, key in (("train", "loss"), ("valid", metric), ("test", metric))}
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.0))
    if points["train"]:
        a.plot(*zip(*points["train"]), lw=1, color="tab:blue")
    a.set(xlabel="step", ylabel="training loss", title="training loss")
    if points["valid"]:
        b.plot(*zip(*points["valid"]), "o-", color="tab:orange", label="validation, at each evaluation")
    if points["test"]:
        b.plot(*zip(*points["test"]), "*", ms=11, color="tab:red", label="test, once at the end")
    if points["valid"] or points["test"]:
        b.legend(fontsize=8)
    b.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_plan(out: Path, budget: float, full: bool) -> None:
    """A tour's folder keeps the flags it was started with; a second run with other flags is refused."""
    meta_path = out / "tour-plan.json"
    asked = {"budget": None if full else budget, "full": full}
    if not meta_path.exists():
        write_text_atomic(meta_path, json.dumps({**asked, "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        return
    before = json.loads(meta_path.read_text())
    if {k: before.get(k) for k in asked} != asked:
        flags = lambda a: "--full" if a.get("full") else f"--budget {a.get('budget'):g}"  # noqa: E731
        raise ConfigError(f"{out} holds a tour started with {flags(before)}; this one asks for {flags(asked)}. "
                          f"Run it again with {flags(before)}, choose another --out, or delete {out}")


def tour(out: Path, budget: float = DEFAULT_BUDGET, full: bool = False, device: str = "auto", console=None,
         progress: bool = True) -> dict | None:
    """Run the tour into `out` and write `out/report.html`; returns the rows of the summary table, or None
    when it was interrupted (run it again to continue)."""
    from rich.console import Console
    console = console or Console(stderr=True, soft_wrap=True)
    stages = plan(budget, full)
    out.mkdir(parents=True, exist_ok=True)
    check_plan(out, budget, full)
    t0 = time.time()
    fetch_s = 10.0 * len({d for s, _ in stages for d in s.datasets})
    total = (fetch_s + CLASSIFIER_S + sum(train_seconds(s, o, full) + s.explain_s for s, o in stages)
             + (TRANSFER_S + TEXT_TRANSFER_S + GAN_AUGMENT_S if full else 0))
    bar = Progress(console, total, progress)
    with bar.bar:
        results = run_stages(stages, out, bar, console, device, full, light(budget, full), fetch_s)
    if results is None:
        return None
    rows = summary_rows(stages, results)
    wall = time.time() - t0
    write_report(out, stages, results, rows, budget, full, wall)
    write_text_atomic(out / "results.md", results_markdown(rows, machine_name()) + "\n")
    print_table(rows, console)
    console.print(f"[bold green]tour done[/] in {wall / 60:.1f} min (this invocation) -> {out / 'report.html'}")
    return {"rows": rows, "report": str(out / "report.html"), "wall_s": wall}


def run_stages(stages, out: Path, bar: Progress, console, device: str, full: bool, lighter: bool,
               fetch_s: float) -> dict | None:
    """Fetch the data, train each stage and run its experiments (then, with --full, the transfer curve);
    the results by stage key, or None when the tour was interrupted."""
    from pillars import data
    bar.stage("fetching data")
    for name in dict.fromkeys(d for s, _ in stages for d in s.datasets):
        data.load(name, log=log_to(console))
    bar.advance(fetch_s)
    results = {}
    for i, (stage, overrides) in enumerate(stages, 1):
        label = f"[{i}/{len(stages)}] {stage.pillar}: {stage.task}"
        bar.stage(label)
        console.print(f"[bold cyan]{label}[/]")
        summary = train_stage(stage, overrides, out, bar, console, device, full)
        if summary is None:
            console.print(f"[yellow]the tour stopped; run the same command again to continue where it "
                          f"stopped (finished stages are kept in {out})[/]")
            return None
        needs_first = tasks.get(stage.task).requires is not None   # the GAN metric's classifier
        bar.advance(train_seconds(stage, overrides, full) + (CLASSIFIER_S if needs_first else 0))
        bar.stage(f"[{i}/{len(stages)}] {stage.pillar}: experiments")
        extra = run_experiments(stage, out, lighter, console, device)
        bar.advance(stage.explain_s)
        results[stage.key] = {"summary": summary, **extra}
    if full:
        from pillars import experiments
        on = {"device": device} if device != "auto" else {}
        for key, what, experiment, extra, seconds in (
                ("transfer", "transfer learning: pretrained vs from scratch", experiments.transfer_curve,
                 {"eval_batches": 4, **on}, TRANSFER_S),
                ("text-transfer", "pretraining for language: text-mlm, then fine-tuned on few labels",
                 experiments.text_transfer, on, TEXT_TRANSFER_S),
                ("gan-augment", "a GAN as data augmentation: few labels, with and without its images",
                 experiments.gan_augment, on, GAN_AUGMENT_S)):
            bar.stage(what)
            table = experiment(out / key, log=log_to(console), extra=extra)
            if not table:
                return None
            bar.advance(seconds)
            results[key] = {"table": table}
    return results


# ----------------------------------------------------------------------------- the figures of each stage

def headline(stage: Stage, summary: dict) -> tuple[str, str, str]:
    """(result, baselines, chance) as text, for the summary table: as the stage's task's family writes them."""
    family = tasks.get(stage.task).family
    return family.headline(summary), family.baselines_text(summary, "baselines"), family.chance(summary) or "-"


def summary_rows(stages, results: dict) -> list[dict]:
    rows = []
    for stage, _ in stages:
        s = results[stage.key]["summary"]
        result, baseline, chance = headline(stage, s)
        rows.append({"pillar": stage.pillar, "task": stage.task, "result": result, "baseline": baseline,
                     "chance": chance, "train_s": s["train_time_s"], "steps": s["steps"], "epochs": s["epochs"],
                     "parameters": s["parameters"], "precision": s["precision"], "machine": s["machine"]})
    def row(pillar: str, task: str, result: str, baseline: str, chance: str) -> dict:   # an experiment's
        return {"pillar": pillar, "task": task, "result": result, "baseline": baseline, "chance": chance,
                "train_s": 0, "steps": 0, "epochs": 0, "parameters": 0, "precision": "", "machine": machine_name()}

    def means(arm: dict, ns) -> str:
        return " / ".join(f"{arm[n]['mean']:.1%}" for n in ns)
    if "transfer" in results:
        t = results["transfer"]["table"]
        ns = sorted(t["pretrained"], key=int)
        rows.append(row("Transfer learning", "fashion-transfer", f"ImageNet weights {means(t['pretrained'], ns)} at "
                        f"{' / '.join(str(n) for n in ns)} labels per class", f"from scratch {means(t['scratch'], ns)}",
                        "10%"))
    if "text-transfer" in results:
        t = results["text-transfer"]["table"]
        ns = sorted(t["pretrained"], key=lambda n: int(n) or t["all"])
        sizes = " / ".join(f"{int(n) or t['all']:,}" for n in ns)
        rows.append(row("Transfer learning", "movie-sentiment-transfer",
                        f"pretrained (text-mlm) {means(t['pretrained'], ns)}; then on the snippets' text "
                        f"{means(t['in-domain'], ns)} at {sizes} labelled snippets",
                        f"from scratch {means(t['scratch'], ns)}; TF-IDF + logistic regression {means(t['tfidf'], ns)}",
                        "50%"))
    if "gan-augment" in results:
        t = results["gan-augment"]["table"]
        ns = sorted(t["real"], key=int)
        rows.append(row("GAN augmentation", "fashion-gan-augment", f"with a conditional GAN's images "
                        f"{means(t['gan'], ns)} at {' / '.join(str(n) for n in ns)} labels per class",
                        f"alone {means(t['real'], ns)}; classic augmentation {means(t['classic'], ns)}", "10%"))
    return rows


def results_markdown(rows: list[dict], machine: str) -> str:
    lines = ["| pillar | task | result | baseline on the same test set | chance | training |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        time_s = f"{r['train_s']:.0f} s, {r['steps']:,} steps" if r["train_s"] else ""
        lines.append(f"| {r['pillar']} | `{r['task']}` | {r['result']} | {r['baseline']} | {r['chance']} | {time_s} |")
    lines.append(f"\nMachine: {machine}, torch {torch.__version__}.")
    return "\n".join(lines)


def print_table(rows: list[dict], console) -> None:
    """The summary table: a rich table on a terminal; in a log file, plain tab-separated lines, never cut."""
    cells = [[r["pillar"], r["task"], r["result"], r["baseline"], r["chance"],
              f"{r['train_s']:.0f}" if r["train_s"] else ""] for r in rows]
    headers = ["pillar", "task", "result", "baseline", "chance", "train s"]
    if not console.is_terminal:   # written as it is: rich would turn the tabs into spaces
        console.file.write("\n".join(["pillars tour", *("\t".join(line) for line in (headers, *cells))]) + "\n")
        return
    from rich.table import Table
    table = Table(*headers, title="pillars tour")
    for line in cells:
        table.add_row(*line)
    console.print(table)


# ----------------------------------------------------------------------------- the report

FIGURES = {   # file in the run folder -> caption
    "curves.png": "Learning curves: the training loss at each logged step, the metric on the validation set (held "
                  "out of training) at each evaluation, and the test figure, read once at the end.",
    "filters.png": "The first layer's filters: small edge and blob detectors, learned from the data alone.",
    "feature_maps.png": "One test image through the network: early layers respond to edges, the middle ones to "
                        "parts, the last ones to whole-object evidence at coarse resolution.",
    "translation.png": "Translation invariance: test accuracy when every image is shifted by k pixels, for the "
                       "CNN and for an MLP with about as many parameters trained on the same images. The "
                       "convolution's shared filters recognise a pattern wherever it sits; the MLP learned "
                       "positions.",
    "confusion.png": "Confusion matrix on the test images (in a short tour, the first 2,000): which articles are "
                     "mistaken for which.",
    "gradcam.png": "Grad-CAM: the regions of each image that drove the predicted class.",
    "memory_span.png": "Memory span: the test loss when the model may read only the last k characters. The loss "
                       "keeps falling while the history is still useful: that is how far back the memory carries "
                       "context.",
    "cells.png": "Single LSTM cells that track something readable (inside quotes, position in a line).",
    "attention_distance.png": "Mean attention distance per layer and head: some heads read the last few "
                              "characters, others reach far back. Attention links distant positions in one step.",
    "kv_cache.png": "Generation time with and without the KV cache (the keys and values of earlier positions are "
                    "kept instead of recomputed).",
    "cross_attention.png": "Cross-attention: for each English output token, the Spanish tokens it read.",
    "sample.png": "64 images drawn by the trained generator from fresh noise.",
    "dynamics.png": "The forger and the detective: D(x) on real images and D(G(z)) on forgeries over training. "
                    "They start apart and settle near a balance, where the detective can no longer tell "
                    "forgeries from real images with confidence.",
    "interpolation.png": "Walking in a straight line (on the sphere) between two noise vectors: the images change "
                         "smoothly, so the generator has learned a continuous space, not a lookup table.",
}
def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(path: Path, caption: str) -> str:
    return (f'<figure><img src="{data_uri(path)}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


# The --full tour's experiments in the report: (folder, plot, title, what it is, the plot's caption).
EXPERIMENT_SECTIONS = (
    ("transfer", "transfer_curve.png", "Transfer learning", "EfficientNet-Lite0 fine-tuned on N labelled images per "
     "class, starting from ImageNet weights or from scratch.", "Test accuracy against labels per class"),
    ("text-transfer", "text_transfer.png", "Pretraining for language", "A Transformer encoder pretrained by filling "
     "in masked tokens of unlabelled text (text-mlm), then fine-tuned on N labelled movie-review snippets; the same "
     "encoder first adapted to the snippets' own text; the same network from random weights.",
     "Test accuracy against labelled snippets"),
    ("gan-augment", "gan_augment.png", "A GAN as data augmentation", "A CNN trained on N labelled images per class "
     "alone, with classic augmentation (crop, flip), and with the images of a conditional GAN trained on those "
     "same N images per class.", "Test accuracy against labels per class"),
)


def write_report(out: Path, stages, results: dict, rows: list[dict], budget: float, full: bool, wall: float) -> Path:
    esc = html.escape
    parts = [f"<h1>pillars tour</h1><p class=meta>{'--full' if full else f'budget {budget:g} minutes'} · "
             f"{esc(machine_name())} · torch {esc(torch.__version__)} · written {time.strftime('%Y-%m-%d %H:%M')}</p>",
             "<table><tr><th>pillar</th><th>task</th><th>result</th><th>baseline on the same test set</th>"
             "<th>chance</th><th>training</th></tr>"]
    for r in rows:
        took = f"{r['train_s']:.0f} s" if r["train_s"] else ""
        parts.append(f"<tr><td>{esc(r['pillar'])}</td><td><code>{esc(r['task'])}</code></td><td>{esc(r['result'])}</td>"
                     f"<td>{esc(r['baseline'])}</td><td>{esc(r['chance'])}</td><td>{took}</td></tr>")
    parts.append("</table>")
    parts += [stage_section(out / stage.key, stage, overrides, results[stage.key]) for stage, overrides in stages]
    for key, png, title, text, caption in EXPERIMENT_SECTIONS:
        if key in results and (out / key / png).exists():
            parts.append(f'<section id="{key}"><h2>{title}</h2><p>{text}</p>'
                         + _img(out / key / png, f"{caption}, mean and standard deviation over 3 seeds.")
                         + "</section>")
    parts.append(f"<p class=meta>This invocation took {wall / 60:.1f} minutes. Every figure comes from the run "
                 f"folders under {esc(str(out))}; rerun with <code>pillars tour</code>.</p>")
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>pillars tour</title><style>"
            "body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
            "vertical-align:top}figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}"
            "figcaption{font-size:13px;color:#555}pre{white-space:pre-wrap;background:#f6f6f6;padding:.8em}"
            ".meta{color:#666;font-size:13px}.pair{display:flex;gap:1em}.pair figure{flex:1}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    path = out / "report.html"
    write_text_atomic(path, page)
    return path


def stage_section(run_dir: Path, stage: Stage, overrides: dict, res: dict) -> str:
    """One stage in the report: what the family is, the run's settings and figures, then the figures its
    task's family lists (`report_figures`) and what its `tour` returned (samples, text, translations)."""
    esc = html.escape
    s = res["summary"]
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the task's defaults"
    parts = [f'<section id="{stage.key}"><h2>{esc(stage.pillar)}: <code>{esc(stage.task)}</code></h2>'
             f"<p>{esc(stage.about)}</p>",
             f"<p class=meta>{s['parameters']:,} parameters · {s['steps']:,} steps ({s['epochs']} epochs) "
             f"in {s['train_time_s']:.0f} s · {esc(s['precision'])} · settings: {esc(settings)} · "
             f"<code>pillars train {esc(stage.task)}</code></p>", metrics_table(s)]
    for name in tasks.get(stage.task).family.report_figures:
        if (run_dir / name).exists():
            parts.append(_img(run_dir / name, FIGURES.get(name, "")))
    if res.get("sample_steps"):
        first, last = res["sample_steps"][0], res["sample_steps"][-1]
        parts.append("<div class=pair>" + _img(run_dir / first, f"Samples from a fixed noise batch at the first "
                                                                f"evaluation ({Path(first).stem})")
                     + _img(run_dir / last, f"... and at the last ({Path(last).stem})") + "</div>")
    if "text" in res:
        t = res["text"]
        parts.append(f"<h3>Generated text</h3><p class=meta>prompt {esc(repr(t['prompt']))}, temperature "
                     f"{t['temperature']}, top-p {t['top_p']}</p><pre>{esc(t['text'])}</pre>")
    if res.get("translations"):
        parts.append("<h3>Translations of held-out verses (beam 4)</h3><table><tr><th>Spanish</th>"
                     "<th>reference (WEB)</th><th>model</th></tr>")
        parts += [f"<tr><td>{esc(tr['source'])}</td><td>{esc(tr['reference'])}</td><td>{esc(tr['output'])}</td></tr>"
                  for tr in res["translations"]]
        parts.append("</table>")
    return "".join(parts) + "</section>"


def _figure(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, (int, float)) else html.escape(str(value))


def metrics_table(summary: dict) -> str:
    """The run's figures on the test set (read once, at the end) beside the validation set's, then its baselines
    on the same test set."""
    esc = html.escape
    valid = summary.get("valid", {})
    cells = [(k, v, valid.get(k)) for k, v in summary["final"].items() if k != "train_time_s"]
    cells += [(k, v, None) for k, v in summary.get("baselines", {}).items()]
    body = "".join(f"<tr><td>{esc(k)}</td><td>{_figure(test)}</td><td>{_figure(val)}</td></tr>"
                   for k, test, val in cells)
    return ("<table><tr><th>figure (baselines: on the same test set)</th><th>test set</th><th>validation set</th>"
            f"</tr>{body}</table>")
