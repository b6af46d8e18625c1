"""The tour: one command trains a network of each of the four families on real data, runs the experiments
that show what each one learned, and writes a self-contained report.

    pillars tour                  about 15 minutes on 2 CPU cores (--budget MINUTES to change it)
    pillars tour --full           the README's configurations (hours on a CPU; a GPU is the place for it)

Each stage is an ordinary run folder under the tour's folder (`runs/tour/cnn`, ...): a finished stage is
reused and an interrupted one resumed, so the tour can be stopped with Ctrl-C and started again. The
budget sets how long each network trains (its epochs or steps, in proportion to the budget); the
experiments after training take about the same time whatever the budget.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pillars import explain, metrics, train
from pillars.config import ConfigError, write_text_atomic
from pillars.plots import pyplot, save_image_grid

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


STAGES = (
    Stage("cnn", "Convolutional networks", "fashion-resnet",
          "A convolutional network slides small learned filters over the image, so a pattern is recognised "
          "wherever it sits, and stacks them so that later layers combine edges into parts and parts into "
          "objects (LeCun et al. 1998; He et al. 2016 for the residual connections).",
          quick={"epochs": 3.0}, scaled="epochs", train_s=190, explain_s=30, datasets=("fashion-mnist",),
          full_s=1500),
    Stage("lstm", "Recurrent networks (LSTM)", "sotu-char-lstm",
          "A recurrent network reads a sequence one token at a time and carries a state from step to step; "
          "the LSTM's gated cell (Hochreiter & Schmidhuber 1997) lets that state keep context for long "
          "stretches. Here it reads the State of the Union addresses character by character and predicts "
          "the next one.",
          # ngram_order 9: the order the validation search picks on this split, fixed to save its minute
          quick={"max_steps": 900, "eval_batches": 16, "ngram_order": 9}, scaled="max_steps",
          train_s=170, explain_s=30, datasets=("sotu",), full_s=560),
    Stage("gpt", "Transformers", "sotu-char-gpt",
          "A Transformer (Vaswani et al. 2017) lets every position read every earlier position directly "
          "through attention, instead of through a chain of states. This small GPT reads the same "
          "characters as the LSTM, so the two compare in bits per character.",
          quick={"max_steps": 700, "width": 128, "context": 128, "warmup_steps": 50, "dropout": 0.0,
                 "eval_batches": 16, "ngram_order": 9}, scaled="max_steps", train_s=170, explain_s=20, datasets=("sotu",), full_s=600),
    Stage("translate", "Transformers: translation", "bible-translate",
          "An encoder-decoder Transformer translates Spanish verses into English; the decoder's "
          "cross-attention reads the Spanish words each English word comes from.",
          quick={}, scaled="max_steps", train_s=0, explain_s=30, datasets=("bible-es-en",), full_only=True,
          full_s=1800),
    Stage("gan", "GANs", "fashion-dcgan",
          "A generative adversarial network (Goodfellow et al. 2014) trains a forger, the generator, against "
          "a detective, the discriminator, until the forgeries are hard to tell from real images. This "
          "DCGAN (Radford et al. 2015) draws Fashion-MNIST articles from random noise.",
          quick={"epochs": 3.0}, scaled="epochs", train_s=110, explain_s=15, datasets=("fashion-mnist",),
          full_s=430),
)

CLASSIFIER_S = 80   # the GAN metric's classifier, trained once and cached
TRANSFER_S = 800    # --full: the transfer curve (18 short fine-tuning runs)


def plan(budget: float = DEFAULT_BUDGET, full: bool = False) -> list[tuple[Stage, dict]]:
    """The stages of a tour with their overrides: at `budget` minutes the scaled key is the quick value
    times budget / 15 (at least a few steps); --full takes each task's own defaults."""
    if not full and not budget > 0:
        raise ConfigError(f"--budget must be a positive number of minutes, not {budget}")
    out = []
    for stage in STAGES:
        if stage.full_only and not full:
            continue
        if full:
            out.append((stage, dict(stage.full)))
            continue
        overrides = dict(stage.quick)
        value = stage.quick[stage.scaled] * budget / DEFAULT_BUDGET
        if stage.scaled == "max_steps":
            overrides["max_steps"] = max(20, int(round(value)))
            overrides["eval_every"] = -(-overrides["max_steps"] // 3)   # three evaluations, the last at the end
        else:
            overrides[stage.scaled] = round(max(0.02, value), 3)
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


def _check_same(run_dir: Path, task: str, cfg: dict, out: Path) -> None:
    diff = train.settings_changed(run_dir, task, cfg)
    if diff:
        raise ConfigError(f"{run_dir} was trained with other settings than this tour asks for ({diff}): {out} "
                          f"holds a tour started with another --budget or --full. Run it again with the same "
                          f"flags, choose another --out, or delete {out}")


def run_stage(stage: Stage, overrides: dict, out: Path, progress: Progress, console, device: str,
              full: bool = False) -> dict | None:
    """Train one stage (or reuse / resume it); None when it was interrupted."""
    run_dir = out / stage.key
    cfg = train.resolve_config(stage.task, overrides={**{k: str(v) for k, v in overrides.items()},
                                                      **({"device": device} if device != "auto" else {})})
    summary_path = run_dir / "summary.json"
    if (run_dir / "config.toml").exists():
        _check_same(run_dir, stage.task, cfg, out)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("status") == "finished":
            return summary
        summary_path.unlink()   # an interrupted run's summary: fit resumes from the checkpoint and writes a new one
    resume = bool(train.checkpoints(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)

    def on_step(step: int, total: int, info: str) -> None:
        progress.within(train_seconds(stage, overrides, full), step / total, info)

    summary = train.fit(stage.task, cfg, run_dir, resume=resume, progress=False, console=console, on_step=on_step)
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
    """The stage's experiments (`pillars explain`) and samples; cached in the run folder."""
    run_dir = out / stage.key
    done = run_dir / "tour.json"
    if done.exists() and done.stat().st_mtime >= (run_dir / "summary.json").stat().st_mtime:
        return json.loads(done.read_text())
    _, cfg, job, _ = train.load_run(run_dir, device)
    summary = json.loads((run_dir / "summary.json").read_text())
    log = console.print
    result: dict = {}
    if job.inputs is not None:   # an image classifier
        shifts = range(0, 9, 2) if lighter else range(0, 9)
        result["explain"] = explain.explain_image_classifier(run_dir, job, log=log, shifts=shifts,
                                                             mlp_epochs=1 if lighter else 3,
                                                             precision=cfg["precision"])
    elif hasattr(job.model, "discriminator"):   # a GAN
        result["explain"] = explain.explain_gan(run_dir, job)
        from pillars.tasks.generative import draw_grid
        save_image_grid(draw_grid(job.model.eval(), 64, None, seed=0, nrow=8), run_dir / "sample.png")
        result["sample"] = "sample.png"
        grids = sorted((run_dir / "samples").glob("step-*.png"))
        result["sample_steps"] = [str(p.relative_to(run_dir)) for p in grids]
    elif hasattr(job.model, "beam_search"):   # a translation model
        result["explain"] = explain.explain_translation(run_dir, job, log=log)
        result["translations"] = translations(job, cfg)
    else:   # a language model
        result["explain"] = explain.explain_language_model(run_dir, job, summary.get("baselines", {}), log=log,
                                                           **({"positions": 1024, "cell_chars": 10000} if lighter
                                                              else {}))
        result["text"] = generated_text(job)
    result["curves"] = "curves.png"
    plot_curves(run_dir, summary, run_dir / "curves.png")
    write_text_atomic(done, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def generated_text(job, prompt: str = "The Congress", length: int = 400, seed: int = 0) -> dict:
    from pillars.tasks.language import generate_texts
    text = generate_texts(job.model, job.tokenizer, prompt, 1, length, 0.8, 0, 0.95, seed)[0]
    return {"prompt": prompt, "temperature": 0.8, "top_p": 0.95, "text": text}


def translations(job, cfg: dict, n: int = 5) -> list[dict]:
    from pillars.tasks.translation import translate
    pairs = job.info.get("samples", [])[:n]
    if not pairs:
        return []
    outputs = translate(job.model, job.tokenizer, [s for s, _ in pairs], cfg, beam=4)
    return [{"source": s, "reference": r, "output": o} for (s, r), o in zip(pairs, outputs)]


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(run_dir: Path, summary: dict, path: Path) -> None:
    """Training loss (left) and the test metric at each evaluation (right), against the optimizer step."""
    lines = read_metrics(run_dir)
    metric = summary["metric"]
    tr = [(r["step"], r["loss"]) for r in lines if r["split"] == "train" and "loss" in r]
    te = [(r["step"], r[metric]) for r in lines if r["split"] == "test" and metric in r]
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.0))
    if tr:
        a.plot(*zip(*tr), lw=1, color="tab:blue")
    a.set(xlabel="step", ylabel="training loss", title="training loss")
    if te:
        b.plot(*zip(*te), "o-", color="tab:orange")
    b.set(xlabel="step", ylabel=metric, title=f"test {metric}")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tour(out: Path, budget: float = DEFAULT_BUDGET, full: bool = False, device: str = "auto", console=None,
         progress: bool = True) -> dict | None:
    """Run the tour into `out` and write `out/report.html`; returns the rows of the summary table, or None
    when it was interrupted (run it again to continue)."""
    from rich.console import Console

    from pillars import data
    console = console or Console(stderr=True)
    stages = plan(budget, full)
    lighter = light(budget, full)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "tour-plan.json"
    asked = {"budget": None if full else budget, "full": full}
    if meta_path.exists():
        before = json.loads(meta_path.read_text())
        if {k: before.get(k) for k in asked} != asked:
            flags = lambda a: "--full" if a.get("full") else f"--budget {a.get('budget'):g}"  # noqa: E731
            raise ConfigError(f"{out} holds a tour started with {flags(before)}; this one asks for {flags(asked)}. "
                              f"Run it again with {flags(before)}, choose another --out, or delete {out}")
    else:
        write_text_atomic(meta_path, json.dumps({**asked, "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")

    t0 = time.time()
    fetch_s = 10.0 * len({d for s, _ in stages for d in s.datasets})
    total = (fetch_s + CLASSIFIER_S + sum(train_seconds(s, o, full) + s.explain_s for s, o in stages)
             + (TRANSFER_S if full else 0))
    bar = Progress(console, total, progress)
    with bar.bar:
        bar.stage("fetching data")
        for name in dict.fromkeys(d for s, _ in stages for d in s.datasets):
            data.load(name, log=console.print)
        bar.advance(fetch_s)
        results = {}
        for i, (stage, overrides) in enumerate(stages, 1):
            label = f"[{i}/{len(stages)}] {stage.pillar}: {stage.task}"
            bar.stage(label)
            console.print(f"[bold cyan]{label}[/]")
            summary = run_stage(stage, overrides, out, bar, console, device, full)
            if summary is None:
                console.print(f"[yellow]the tour stopped; run the same command again to continue where it "
                              f"stopped (finished stages are kept in {out})[/]")
                return None
            bar.advance(train_seconds(stage, overrides, full) + (CLASSIFIER_S if stage.key == "gan" else 0))
            bar.stage(f"[{i}/{len(stages)}] {stage.pillar}: experiments")
            extra = run_experiments(stage, out, lighter, console, device)
            bar.advance(stage.explain_s)
            results[stage.key] = {"summary": summary, **extra}
        if full:
            from pillars import experiments
            bar.stage("transfer learning: pretrained vs from scratch")
            table = experiments.transfer_curve(out / "transfer", log=console.print,
                                               extra={"eval_batches": 4,
                                                      **({"device": device} if device != "auto" else {})})
            if not table:
                return None
            bar.advance(TRANSFER_S)
            results["transfer"] = {"table": table}
    rows = summary_rows(stages, results)
    wall = time.time() - t0
    write_report(out, stages, results, rows, budget, full, wall)
    write_text_atomic(out / "results.md", results_markdown(rows, train.machine_name()) + "\n")
    print_table(rows, console)
    console.print(f"[bold green]tour done[/] in {wall / 60:.1f} min (this invocation) -> {out / 'report.html'}")
    return {"rows": rows, "report": str(out / "report.html"), "wall_s": wall}


# ----------------------------------------------------------------------------- the figures of each stage

def headline(stage: Stage, summary: dict) -> tuple[str, str, str]:
    """(result, baselines, chance) as text, for the summary table."""
    chance = metrics.baselines_text(summary, "chance")
    if not chance and "accuracy" in summary["final"] and stage.task.startswith("fashion"):
        chance = "10% (10 classes)"
    return metrics.result_text(summary), metrics.baselines_text(summary, "baselines"), chance or "-"


def summary_rows(stages, results: dict) -> list[dict]:
    rows = []
    for stage, _ in stages:
        s = results[stage.key]["summary"]
        result, baseline, chance = headline(stage, s)
        rows.append({"pillar": stage.pillar, "task": stage.task, "result": result, "baseline": baseline,
                     "chance": chance, "train_s": s["train_time_s"], "steps": s["steps"], "epochs": s["epochs"],
                     "parameters": s["parameters"], "precision": s["precision"], "machine": s["machine"]})
    if "transfer" in results:
        t = results["transfer"]["table"]
        ns = sorted(t["pretrained"], key=int)
        rows.append({"pillar": "Transfer learning", "task": "fashion-transfer",
                     "result": "ImageNet weights " + " / ".join(f"{t['pretrained'][n]['mean']:.1%}" for n in ns)
                               + f" at {' / '.join(str(n) for n in ns)} labels per class",
                     "baseline": "from scratch " + " / ".join(f"{t['scratch'][n]['mean']:.1%}" for n in ns),
                     "chance": "10%", "train_s": 0, "steps": 0, "epochs": 0, "parameters": 0, "precision": "",
                     "machine": train.machine_name()})
    return rows


def results_markdown(rows: list[dict], machine_name: str) -> str:
    lines = ["| pillar | task | result | baseline on the same test set | chance | training |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        time_s = f"{r['train_s']:.0f} s, {r['steps']:,} steps" if r["train_s"] else ""
        lines.append(f"| {r['pillar']} | `{r['task']}` | {r['result']} | {r['baseline']} | {r['chance']} | {time_s} |")
    lines.append(f"\nMachine: {machine_name}, torch {torch.__version__}.")
    return "\n".join(lines)


def print_table(rows: list[dict], console) -> None:
    from rich.table import Table
    table = Table(title="pillars tour")
    for col in ("pillar", "task", "result", "baseline", "chance", "train s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["pillar"], r["task"], r["result"], r["baseline"], r["chance"],
                      f"{r['train_s']:.0f}" if r["train_s"] else "")
    if console.is_terminal:
        console.print(table)
    else:   # a log file: wide enough for one line a row
        from rich.console import Console
        Console(file=console.file, width=160).print(table)


# ----------------------------------------------------------------------------- the report

FIGURES = {   # file in the run folder -> caption
    "curves.png": "Learning curves: the training loss at each logged step and the test metric at each evaluation.",
    "filters.png": "The first layer's filters: small edge and blob detectors, learned from the data alone.",
    "feature_maps.png": "One test image through the network: early layers respond to edges, the middle ones to "
                        "parts, the last ones to whole-object evidence at coarse resolution.",
    "translation.png": "Translation invariance: test accuracy when every image is shifted by k pixels, for the "
                       "CNN and for an MLP with about as many parameters trained on the same images. The "
                       "convolution's shared filters recognise a pattern wherever it sits; the MLP learned "
                       "positions.",
    "confusion.png": "Confusion matrix on the test set: which articles are mistaken for which.",
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
ORDER = {"cnn": ["curves.png", "filters.png", "feature_maps.png", "translation.png", "confusion.png", "gradcam.png"],
         "lstm": ["curves.png", "memory_span.png", "cells.png"],
         "gpt": ["curves.png", "memory_span.png", "attention_distance.png", "kv_cache.png"],
         "translate": ["curves.png", "cross_attention.png"],
         "gan": ["curves.png", "sample.png", "dynamics.png", "interpolation.png"]}


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(path: Path, caption: str) -> str:
    return (f'<figure><img src="{data_uri(path)}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(out: Path, stages, results: dict, rows: list[dict], budget: float, full: bool, wall: float) -> Path:
    esc = html.escape
    parts = [f"<h1>pillars tour</h1><p class=meta>{'--full' if full else f'budget {budget:g} minutes'} · "
             f"{esc(train.machine_name())} · torch {esc(torch.__version__)} · written {time.strftime('%Y-%m-%d %H:%M')}</p>",
             "<table><tr><th>pillar</th><th>task</th><th>result</th><th>baseline on the same test set</th>"
             "<th>chance</th><th>training</th></tr>"]
    for r in rows:
        took = f"{r['train_s']:.0f} s" if r["train_s"] else ""
        parts.append(f"<tr><td>{esc(r['pillar'])}</td><td><code>{esc(r['task'])}</code></td><td>{esc(r['result'])}</td>"
                     f"<td>{esc(r['baseline'])}</td><td>{esc(r['chance'])}</td><td>{took}</td></tr>")
    parts.append("</table>")
    for stage, overrides in stages:
        run_dir = out / stage.key
        res = results[stage.key]
        s = res["summary"]
        parts.append(f'<section id="{stage.key}"><h2>{esc(stage.pillar)}: <code>{esc(stage.task)}</code></h2>'
                     f"<p>{esc(stage.about)}</p>")
        settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the task's defaults"
        parts.append(f"<p class=meta>{s['parameters']:,} parameters · {s['steps']:,} steps ({s['epochs']} epochs) "
                     f"in {s['train_time_s']:.0f} s · {esc(s['precision'])} · settings: {esc(settings)} · "
                     f"<code>pillars train {esc(stage.task)}</code></p>")
        parts.append(metrics_table(s))
        for name in ORDER[stage.key]:
            if (run_dir / name).exists():
                parts.append(_img(run_dir / name, FIGURES[name]))
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
            for tr in res["translations"]:
                parts.append(f"<tr><td>{esc(tr['source'])}</td><td>{esc(tr['reference'])}</td>"
                             f"<td>{esc(tr['output'])}</td></tr>")
            parts.append("</table>")
        parts.append("</section>")
    if "transfer" in results and (out / "transfer" / "transfer_curve.png").exists():
        parts.append('<section id="transfer"><h2>Transfer learning</h2><p>EfficientNet-Lite0 fine-tuned on N '
                     "labelled images per class, starting from ImageNet weights or from scratch.</p>"
                     + _img(out / "transfer" / "transfer_curve.png",
                            "Test accuracy against labels per class, mean and standard deviation over 3 seeds.")
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


def metrics_table(summary: dict) -> str:
    esc = html.escape
    cells = [(k, v) for k, v in summary["final"].items() if k != "train_time_s"]
    cells += [(k, v) for k, v in summary.get("baselines", {}).items()]
    body = "".join(f"<tr><td>{esc(k)}</td><td>{v:.4g}</td></tr>" if isinstance(v, (int, float))
                   else f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in cells)
    return f"<table><tr><th>figure (final test set; baselines on the same set)</th><th>value</th></tr>{body}</table>"
