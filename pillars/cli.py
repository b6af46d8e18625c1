"""The `pillars` command line."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)
out = Console()


def _size_on_disk(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return f"{n / 1e6:.1f} MB"


# ----------------------------------------------------------------------------- pillars data ...

def cmd_data_list(args) -> int:
    from pillars import data
    table = Table("name", "task kind", "size", "licence", "cached")
    for ds in data.REGISTRY.values():
        table.add_row(ds.name, ds.kind, ds.size, ds.licence,
                      f"yes ({_size_on_disk(ds.raw_dir)})" if ds.is_cached() else "no")
    out.print(table)
    out.print(f"cache: {data.home()}  (set PILLARS_HOME to move it)")
    return 0


def cmd_data_fetch(args) -> int:
    from pillars import data
    names = list(data.REGISTRY) if args.all else args.names
    if not names:
        raise SystemExit("name the datasets to fetch, or use --all (see `pillars data list`)")
    for name in names:
        data.get(name)
    for name in names:
        arrays = data.load(name, log=lambda s: console.print(s))
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()) or "files checked"
        console.print(f"[green]ok[/] {name}: {shapes}")
    return 0


def cmd_data_info(args) -> int:
    from pillars import data
    ds = data.get(args.name)
    out.print(f"[bold]{ds.name}[/]: {ds.description}")
    out.print(f"  task kind: {ds.kind}\n  size: {ds.size}\n  licence: {ds.licence}")
    out.print(f"  cached: {'yes' if ds.is_cached() else 'no'} in {ds.raw_dir}")
    out.print("  sources, tried in order: local cache, " + ", ".join(s.describe() for s in ds.sources))
    out.print("  files (sha256, path inside the package, web address):")
    for f in ds.files:
        out.print(f"    {f.name}\n      {f.sha256}\n      {f.inner}\n      {f.url or '-'}")
    for key, value in ds.meta.items():
        out.print(f"  {key}: {value}")
    return 0


def cmd_data_export(args) -> int:
    """A text corpus as one UTF-8 file (for the text-file task, or any other tool); a set of photos as files
    in a folder."""
    from pillars import data
    from pillars.config import ConfigError, write_text_atomic
    from pillars.data.registry import atomic_copy
    from pillars.data.text import as_text
    from pillars.data.vision import PHOTOS_KIND
    ds = data.get(args.name)
    if ds.kind == PHOTOS_KIND:
        folder = Path(args.out)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is a file; {args.name} is a set of photos: give a folder to write them to")
        paths = data.fetch(args.name, log=lambda s: console.print(s))
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            atomic_copy(path, folder / name)
            out.print(f"{folder / name}: {ds.meta['photos'][name]}")
        return 0
    arrays = data.load(args.name, log=lambda s: console.print(s))
    if "text" not in arrays or "train_text" not in arrays:
        raise ConfigError(f"{args.name} is not a text corpus or a set of photos; export takes sotu, brown, "
                          "bible-web or product-photos")
    path = Path(args.out)
    text = as_text(arrays["text"])
    write_text_atomic(path, text)
    out.print(f"wrote {len(text):,} characters of {args.name} to {path}")
    return 0


# ----------------------------------------------------------------------------- pillars list / train / evaluate

def cmd_list(args) -> int:
    from pillars import tasks
    if args.keys:
        from pillars import train
        table = Table("key", "default", "type")
        for k, v in train.default_config(tasks.get(args.keys)).items():
            table.add_row(k, str(v), type(v).__name__)
        out.print(table)
        return 0
    table = Table("task", "dataset", "model", "metric", "description")
    for t in tasks.TASKS.values():
        table.add_row(t.name, t.dataset, t.model, t.metric, t.description)
    out.print(table)
    return 0


FLAG_KEYS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "seed": "seed",
             "device": "device", "precision": "precision", "max_steps": "max_steps"}


def cmd_train(args) -> int:
    from pillars import config, train
    overrides = config.parse_sets(args.set)
    for flag, key in FLAG_KEYS.items():
        if getattr(args, flag) is not None:
            overrides[key] = str(getattr(args, flag))
    if args.compile:
        overrides["compile"] = "true"
    if args.resume:
        clash = [flag for flag, given in (("--config", args.config), ("--out", args.out), ("--dry-run", args.dry_run))
                 if given]
        if clash:
            raise config.ConfigError(f"--resume continues a run with its saved configuration and folder; it takes "
                                     f"no {', '.join(clash)}")
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").exists():
            raise config.ConfigError(f"--resume {run_dir}: not a run folder (no config.toml)")
        task_name, cfg = train.saved_config(run_dir)
        if args.task and args.task != task_name:
            raise config.ConfigError(f"{run_dir} is a run of {task_name}, not {args.task}")
        changed = {k: v for k, v in config.apply_overrides(cfg, overrides, "the command line").items()
                   if v != cfg[k]}
        if changed:
            console.print(f"[yellow]resuming with changed keys {changed}: the run is no longer an exact "
                          f"continuation[/]")
        cfg = {**cfg, **changed}
        train.check_config(cfg)
        train.fit(task_name, cfg, run_dir, resume=True, progress=not args.no_progress)
        return 0
    if not args.task:
        raise config.ConfigError("name a task (see `pillars list`), or --resume RUN_DIR")
    cfg = train.resolve_config(args.task, args.config, overrides)
    if cfg.get("data"):   # saved as an absolute path, so sample / explain / evaluate work from any folder
        cfg["data"] = str(Path(cfg["data"]).expanduser().resolve())
    if args.dry_run:   # one step and one evaluation batch, in a folder that is then removed
        cfg.update(max_steps=1, eval_batches=1)
        with tempfile.TemporaryDirectory(prefix="pillars-dry-run-") as tmp:
            summary = train.fit(args.task, cfg, Path(tmp), progress=False, baselines=False, whole_final_eval=False)
        console.print(f"dry run ok: {summary['final']}")
        return 0
    from pillars.train import init_process, new_run_dir
    proc = init_process(cfg["device"])
    if args.out:
        run_dir = Path(args.out)
        if (run_dir / "config.toml").exists():
            raise config.ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                                     "or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
    elif proc.world > 1:   # every process must agree on the folder
        import torch.distributed as dist
        box = [str(new_run_dir(Path(args.runs), args.task)) if proc.main else None]
        dist.broadcast_object_list(box, src=0)
        run_dir = Path(box[0])
    else:
        run_dir = new_run_dir(Path(args.runs), args.task)
    try:
        train.fit(args.task, cfg, run_dir, progress=not args.no_progress)
    except BaseException:
        if proc.main and run_dir.is_dir() and not any(run_dir.iterdir()):   # failed before writing anything
            run_dir.rmdir()
        raise
    return 0


def cmd_evaluate(args) -> int:
    from pillars import train
    from pillars import config
    result = train.evaluate_run(Path(args.run_dir), args.device, config.parse_sets(args.set))
    print(json.dumps(result, indent=2))
    return 0


def cmd_predict(args) -> int:
    import numpy as np
    import torch
    from pillars import train
    from pillars.data.folder import as_fashion_mnist, open_image, to_array
    from pillars.tasks import normalised, scaled_pixels
    model, spec, device = train.load_classifier(Path(args.run_dir), args.device)
    model.eval()
    for path in args.images:
        image = open_image(Path(path))
        if spec.light_on_dark:   # whole objects, light on black: convert the photo as those images were made
            pixels, invert = as_fashion_mnist(image, spec.size, args.invert)
            if spec.channels == 3:
                pixels = np.repeat(pixels[..., None], 3, -1)
        else:
            pixels, invert = to_array(image, spec.size, spec.channels), args.invert == "yes"
            if invert:
                pixels = 255 - pixels
        x = scaled_pixels(pixels[None])
        with torch.no_grad():
            probs = model(normalised(x, spec.mean, spec.std).to(device)).float().softmax(-1)[0].cpu()
        top = probs.topk(min(args.top_k, len(probs)))
        out.print(f"[bold]{path}[/]" + ("  (inverted: light background)" if invert else ""))
        for p, i in zip(top.values.tolist(), top.indices.tolist()):
            out.print(f"  {spec.classes[i]:<16} {p:6.1%}")
    return 0


def cmd_sample(args) -> int:
    from pillars import train
    from pillars.config import ConfigError
    _, _, job, device = train.load_run(Path(args.run_dir), args.device)
    tok, model = job.tokenizer, job.model.eval()
    if hasattr(model, "discriminator"):
        return sample_images(args, job, device)
    if tok is None or not hasattr(model, "generate"):
        raise ConfigError(f"{args.run_dir} is not a language model or GAN run; sample takes runs of text tasks "
                          "and GANs")
    if args.class_name:
        raise ConfigError("--class is for GAN runs (fashion-cdcgan); a language model takes --prompt")
    args.n = 1 if args.n is None else args.n
    if args.length < 1 or args.n < 1 or args.top_k < 0 or not 0 <= args.top_p <= 1:
        raise ConfigError("--length and --n must be at least 1, --top-k at least 0, --top-p between 0 and 1")
    from pillars.tasks.language import generate_texts
    prompt = args.prompt or "\n\n"   # no prompt: start as a new paragraph
    texts = generate_texts(model, tok, prompt, args.n, args.length, args.temperature, args.top_k, args.top_p,
                           args.seed)
    joined = "\n\n---\n\n".join(t.strip("\n") for t in texts) + "\n"
    if args.out:
        Path(args.out).write_text(joined, encoding="utf-8")
        out.print(f"wrote {len(texts)} sample(s) to {args.out}")
    else:
        print(joined, end="")
    return 0


def sample_images(args, job, device) -> int:
    """A grid of generated images (PNG): --n of them, of one --class for a conditional GAN."""
    import torch
    from pillars.config import ConfigError
    from pillars.plots import save_image_grid
    from pillars.tasks.generative import draw_grid
    n = 64 if args.n is None else args.n
    if n < 1:
        raise ConfigError("--n must be at least 1")
    classes, y = job.info["classes"], None
    if args.class_name:
        if not job.info["conditional"]:
            raise ConfigError(f"{args.run_dir} is an unconditional GAN: it cannot be asked for a class "
                              "(train fashion-cdcgan for that)")
        names = {c.lower(): i for i, c in enumerate(classes)}
        key = args.class_name.lower()
        if key not in names and not (key.isdigit() and int(key) < len(classes)):
            raise ConfigError(f"unknown class {args.class_name!r}; the classes are: {', '.join(classes)}")
        y = torch.full((n,), names[key] if key in names else int(key), device=device)
    elif job.info["conditional"]:   # no class asked: every class in turn
        y = torch.arange(n, device=device) % len(classes)
    path = Path(args.out) if args.out else Path(args.run_dir) / "sample.png"
    per_row = len(classes) if job.info["conditional"] and not args.class_name else 8   # a column per class
    save_image_grid(draw_grid(job.model.eval(), n, y, args.seed, min(n, per_row)), path)
    what = f" of class {classes[int(y[0])]}" if args.class_name else ""
    out.print(f"wrote {n} generated images{what} to {path}")
    return 0


def cmd_translate(args) -> int:
    from pillars import train
    from pillars.config import ConfigError
    from pillars.models.transformer import Seq2SeqTransformer
    from pillars.tasks.translation import translate
    _, cfg, job, _ = train.load_run(Path(args.run_dir), args.device)
    if not isinstance(job.model, Seq2SeqTransformer):
        raise ConfigError(f"{args.run_dir} is not a translation run; translate takes runs of bible-translate")
    if args.beam < 1:
        raise ConfigError("--beam must be at least 1 (1: greedy)")
    for sentence, translation in zip(args.sentences, translate(job.model, job.tokenizer, args.sentences, cfg,
                                                               args.beam)):   # translations on stdout, one a line
        console.print(f"[dim]{sentence}[/]")
        print(translation)
    return 0


def cmd_explain(args) -> int:
    from pillars import explain, train
    from pillars.config import ConfigError
    run_dir = Path(args.run_dir)
    _, cfg, job, _ = train.load_run(run_dir, args.device)
    if job.inputs is not None:
        return explain_image_run(run_dir, job, cfg["precision"])
    if hasattr(job.model, "discriminator"):   # a GAN
        result = explain.explain_gan(run_dir, job)
        out.print(f"wrote {run_dir / result['interpolation']}: walks through the noise space")
        tail = ("" if result["d_real_last_tenth"] is None else
                f" (last tenth: {result['d_real_last_tenth']:.3f} and {result['d_fake_last_tenth']:.3f})")
        out.print(f"wrote {run_dir / result['dynamics']}: D(x) and D(G(z)) over training{tail}")
        return 0
    if hasattr(job.model, "beam_search"):   # a translation model
        result = explain.explain_translation(run_dir, job, args.source, log=out.print)
        out.print(f"wrote {run_dir / result['cross_attention']}: which source tokens each output token read")
        return 0
    if job.tokenizer is not None and hasattr(job.model, "generate"):   # a language model
        summary = run_dir / "summary.json"
        baselines = json.loads(summary.read_text()).get("baselines", {}) if summary.exists() else {}
        result = explain.explain_language_model(run_dir, job, baselines, log=console.print)
        out.print(f"wrote {run_dir / 'memory_span.png'}: test loss ({result['memory_span_unit']}) with k tokens "
                  "of history")
        out.print("  " + "  ".join(f"k={k}: {v:.3f}" for k, v in result["memory_span"].items()))
        if "attention_distance" in result:
            out.print(f"wrote {run_dir / 'attention_distance.png'}: mean distance attended, per layer (heads)")
            for i, layer in enumerate(result["attention_distance"]):
                out.print(f"  layer {i + 1}: " + " ".join(f"{d:6.1f}" for d in layer))
            kv = result["kv_cache_seconds"]
            out.print(f"wrote {run_dir / 'kv_cache.png'}: {kv['tokens'][-1]} tokens in {kv['KV cache'][-1]:.2f} s "
                      f"with the KV cache, {kv['recomputing'][-1]:.2f} s recomputing "
                      f"({kv['recomputing'][-1] / kv['KV cache'][-1]:.1f}x)")
        if "cells" in result:
            out.print(f"wrote {run_dir / 'cells.png'}: the cells that best track")
            for name, c in result["cells"].items():
                out.print(f"  {name:<38} cell {c['cell']:>4}  correlation {c['correlation']:+.2f}")
        return 0
    if "season" in job.info:
        explain.plot_forecasts(job, run_dir / "forecasts.png")
        out.print(f"wrote {run_dir / 'forecasts.png'}")
        return 0
    raise ConfigError(f"{run_dir}: explain has experiments for image classifiers, language models, "
                      "translation models, GANs and forecasters; for the adding problem see `pillars experiment long-lag`")


def explain_image_run(run_dir: Path, job, precision: str = "32") -> int:
    from pillars import explain
    result = explain.explain_image_classifier(run_dir, job, log=console.print, precision=precision)
    for key in ("filters", "feature_maps", "attention_maps"):
        if key in result:
            out.print(f"wrote {run_dir / result[key]}")
    out.print(f"wrote {run_dir / 'confusion.png'} (test accuracy {result['accuracy']:.2%})")
    out.print(f"wrote {run_dir / 'gradcam.png'}")
    t = result["translation"]
    out.print(f"wrote {run_dir / 'translation.png'}: accuracy at shifts {result['shifts']} px")
    for name, accs in t.items():
        out.print(f"  {name:<4} " + " ".join(f"{a:.3f}" for a in accs))
    return 0


def cmd_tour(args) -> int:
    from pillars import tour
    result = tour.tour(Path(args.out), budget=args.budget, full=args.full, device=args.device,
                       console=console, progress=not args.no_progress)
    if result is None:
        return 130
    if args.open:
        import webbrowser
        webbrowser.open(Path(result["report"]).resolve().as_uri())
    return 0


def cmd_experiment(args) -> int:
    from pillars import config, experiments
    if args.name not in experiments.EXPERIMENTS:
        raise config.ConfigError(config.unknown_name_message("experiment", args.name, experiments.EXPERIMENTS))
    if args.seeds is not None and args.seeds < 1:
        raise config.ConfigError("--seeds must be at least 1")
    folder = Path(args.out or f"runs/{args.name}")
    extra = config.parse_sets(args.set)
    if args.name == "transfer-curve":
        labels = tuple(int(n) for n in (args.labels or "10,30,100").split(","))
        seeds = 3 if args.seeds is None else args.seeds
        table = experiments.transfer_curve(folder, labels, tuple(range(seeds)), extra, log=console.print)
        if not table:
            return 130
        out.print(f"test accuracy, mean ± std over {seeds} seeds  ->  {folder / 'transfer_curve.png'}")
        out.print(f"{'labels/class':>12}  {'pretrained':>14}  {'scratch':>14}  {'gain':>6}")
        for n in labels:
            p, s = table["pretrained"][n], table["scratch"][n]
            out.print(f"{n:>12}  {p['mean']:>8.2%} ± {p['std']:.1%}  {s['mean']:>8.2%} ± {s['std']:.1%}  "
                      f"{100 * (p['mean'] - s['mean']):>+5.1f}")
    elif args.name == "long-lag":
        lags = tuple(int(n) for n in (args.lags or "25,50,100,200").split(","))
        seeds = 1 if args.seeds is None else args.seeds
        table = experiments.long_lag(folder, lags, seeds=tuple(range(seeds)), extra=extra, log=console.print)
        if not table:
            return 130
        out.print(f"adding problem, test sequences solved (|error| < 0.04)  ->  {folder / 'long_lag.png'}")
        out.print(f"{'T':>5}  {'LSTM':>7}  {'tanh RNN':>8}   (always answering 1: {experiments.chance_success():.1%})")
        for lag in lags:
            out.print(f"{lag:>5}  {table['lstm'][lag]['mean']:>7.1%}  {table['rnn'][lag]['mean']:>8.1%}")
    return 0


# ----------------------------------------------------------------------------- parser

DEVICES = ["auto", "cpu", "cuda", "mps"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pillars", description="CNNs, LSTMs, Transformers and GANs on real data.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a task (see `pillars list`)")
    t.add_argument("task", nargs="?", help="task name")
    t.add_argument("--config", help="TOML file of configuration keys")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a configuration key (repeatable); `pillars list --keys TASK` lists them")
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-steps", dest="max_steps", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=DEVICES)
    t.add_argument("--precision", choices=["32", "bf16", "16"])
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--out", help="run folder (default: runs/TASK, runs/TASK-2, ...)")
    t.add_argument("--runs", default="runs", help="where new run folders go (default: ./runs)")
    t.add_argument("--dry-run", action="store_true", help="one step and one evaluation batch, then exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run on its test set")
    e.add_argument("run_dir")
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an evaluation option, e.g. beam=4 (translation) or tta_flip=true (images)")
    e.set_defaults(fn=cmd_evaluate)

    pr = sub.add_parser("predict", help="classify image files with a trained image run")
    pr.add_argument("run_dir")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--top-k", dest="top_k", type=int, default=3)
    pr.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                    help="invert the grey levels; auto: when the model was trained on light objects on black "
                         "(Fashion-MNIST, MNIST) and the photo's corners are light")
    pr.add_argument("--device", default="cpu", choices=DEVICES)
    pr.set_defaults(fn=cmd_predict)

    sa = sub.add_parser("sample", help="generate text from a language model run, or images from a GAN run")
    sa.add_argument("run_dir")
    sa.add_argument("--prompt", default="", help="text to continue (default: a new paragraph)")
    sa.add_argument("--length", type=int, default=300, help="tokens to generate (characters or words)")
    sa.add_argument("--temperature", type=float, default=0.8, help="0 picks the most likely token every time")
    sa.add_argument("--top-k", dest="top_k", type=int, default=0, help="sample from the k most likely (0: all)")
    sa.add_argument("--top-p", dest="top_p", type=float, default=0.0,
                    help="nucleus sampling: from the most likely tokens that make up this probability (0: off)")
    sa.add_argument("--n", type=int, default=None, help="number of samples (default: 1 text, 64 images)")
    sa.add_argument("--class", dest="class_name", default="",
                    help="conditional GAN: the class to generate, by name (e.g. sneaker) or number")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", help="write the text to this file instead of the terminal; GANs: the PNG "
                    "(default: RUN_DIR/sample.png)")
    sa.add_argument("--device", default="cpu", choices=DEVICES)
    sa.set_defaults(fn=cmd_sample)

    tr = sub.add_parser("translate", help="translate sentences with a trained translation run")
    tr.add_argument("run_dir")
    tr.add_argument("sentences", nargs="+", metavar="SENTENCE")
    tr.add_argument("--beam", type=int, default=4, help="beam width (1: greedy)")
    tr.add_argument("--device", default="cpu", choices=DEVICES)
    tr.set_defaults(fn=cmd_translate)

    ex = sub.add_parser("explain", help="experiments that show what a trained run learned (PNG files)")
    ex.add_argument("run_dir")
    ex.add_argument("--device", default="cpu", choices=DEVICES)
    ex.add_argument("--source", default="", help="translation runs: the sentence whose cross-attention is "
                    "plotted (default: a held-out verse)")
    ex.set_defaults(fn=cmd_explain)

    to = sub.add_parser("tour", help="train a CNN, an LSTM, a Transformer and a GAN on real data and write a "
                                     "report of what each learned (about 15 minutes on 2 CPU cores)")
    to.add_argument("--budget", type=float, default=15.0, help="about the minutes of the tour on 2 CPU cores (default "
                                                               "15): the networks' training scales with it; the "
                                                               "experiments and baselines add ~3 minutes whatever it is")
    to.add_argument("--full", action="store_true", help="the README's configurations, plus translation and the "
                                                        "transfer curve (hours on a CPU)")
    to.add_argument("--out", default="runs/tour", help="the tour's folder (default runs/tour); a second run "
                                                       "continues it")
    to.add_argument("--device", default="auto", choices=DEVICES)
    to.add_argument("--open", action="store_true", help="open the report in a web browser at the end")
    to.add_argument("--no-progress", action="store_true")
    to.set_defaults(fn=cmd_tour)
    xp = sub.add_parser("experiment", help="experiments of several runs: transfer-curve, long-lag")
    xp.add_argument("name", help="transfer-curve or long-lag")
    xp.add_argument("--out", help="folder of the experiment's runs and plot (default: runs/NAME)")
    xp.add_argument("--labels", help="transfer-curve: labelled images per class, comma-separated (10,30,100)")
    xp.add_argument("--lags", help="long-lag: sequence lengths, comma-separated (25,50,100,200)")
    xp.add_argument("--seeds", type=int, help="seeds per point (transfer-curve 3, long-lag 1)")
    xp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a configuration key for every run (see `pillars list --keys fashion-transfer` "
                         "or `adding-problem`)")
    xp.set_defaults(fn=cmd_experiment)

    ls = sub.add_parser("list", help="list tasks, or one task's configuration keys")
    ls.add_argument("--keys", metavar="TASK", help="print TASK's configuration keys and defaults")
    ls.set_defaults(fn=cmd_list)

    d = sub.add_parser("data", help="datasets: list, fetch, info")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("list", help="datasets with their kind, size, licence and cache state")
    dl.set_defaults(fn=cmd_data_list)
    df = dsub.add_parser("fetch", help="fetch datasets into the cache and check them")
    df.add_argument("names", nargs="*")
    df.add_argument("--all", action="store_true")
    df.set_defaults(fn=cmd_data_fetch)
    de = dsub.add_parser("export", help="a text corpus as one UTF-8 file (sotu: the addresses in year order, "
                                        "a blank line between them), or product-photos as JPEG files in a folder")
    de.add_argument("name")
    de.add_argument("out", help="the file to write (a folder for product-photos)")
    de.set_defaults(fn=cmd_data_export)
    di = dsub.add_parser("info", help="a dataset's sources, files and checksums")
    di.add_argument("name")
    di.set_defaults(fn=cmd_data_info)
    return p


def main(argv: list[str] | None = None) -> int:
    from pillars.config import ConfigError
    from pillars.data.registry import DataError
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, DataError) as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as e:
        from pillars.train import NonFiniteLoss
        if not isinstance(e, NonFiniteLoss):
            raise
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 3


if __name__ == "__main__":
    sys.exit(main())
