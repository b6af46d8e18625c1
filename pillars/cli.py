"""The `pillars` command line.

Every command that works on a trained run loads it through `pillars.runs` and hands it to its task's
family (`pillars.tasks.Family`): the command line knows no model family. Results go to stdout and
messages to stderr; output that is not a terminal is plain text, never cut to a width, and `--json`
gives the lists to scripts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)   # messages and progress
out = Console(soft_wrap=True)                    # results: lines are never wrapped or cut


def say(text: str) -> None:
    """A family's or the lifecycle's log line on stdout, as plain text (brackets are not markup)."""
    out.print(text, markup=False, highlight=False)


def note(text: str) -> None:
    """A log line on stderr, as plain text."""
    console.print(text, markup=False, highlight=False)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Rows under headers: a rich table on a terminal; tab-separated lines, headers first, in a pipe or a
    file, so that `grep` and `cut` see whole values."""
    if out.is_terminal:
        table = Table(*headers)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        out.print(table)
    else:
        for row in (headers, *rows):
            print("\t".join(row))


def print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _size_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ----------------------------------------------------------------------------- pillars data ...

def output_file(path: Path, what: str, command: str, suffix: str = "") -> Path:
    """A new file the user asked `command` to write: its folder is created, and must be writable; an existing
    file is never replaced, whether the user's own or one a run folder holds (weights, configuration, logs)."""
    from pillars.config import ConfigError
    from pillars.data.registry import unwritable
    from pillars.runs import run_owning
    run = run_owning(path)
    if run is not None:
        raise ConfigError(f"{what} {path} is a file of the run {run}: writing there would replace it. Give "
                          "another file name")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder: give a file name")
    if suffix and path.suffix.lower() != suffix:
        raise ConfigError(f"{what} {path} does not end in {suffix}: give the file a name that ends in {suffix}")
    if path.exists():
        raise ConfigError(f"{what} {path} already exists: {command} never replaces a file; delete it first, or "
                          "give another name")
    why = unwritable(path.parent)
    if why:
        raise ConfigError(f"{what} {path}: its folder {path.parent} {why}; choose another place")
    return path


def output_folder(path: Path) -> Path:
    """The folder a command's --out names, which may not exist yet, but may not be a file."""
    from pillars.config import ConfigError
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder: choose another --out")
    return path


def cmd_data_list(args) -> int:
    from pillars import data
    if args.json:
        print_json([{"name": ds.name, "kind": ds.kind, "size": ds.size, "licence": ds.licence,
                     "cached": ds.is_cached(), "cached_bytes": _size_on_disk(ds.raw_dir), "path": str(ds.raw_dir)}
                    for ds in data.REGISTRY.values()])
        return 0
    print_table(["name", "task kind", "size", "licence", "cached"],
                [[ds.name, ds.kind, ds.size, ds.licence,
                  f"yes ({_size_on_disk(ds.raw_dir) / 1e6:.1f} MB)" if ds.is_cached() else "no"]
                 for ds in data.REGISTRY.values()])
    where = f"cache: {data.home()}  (set PILLARS_HOME to move it)"
    if out.is_terminal:
        say(where)
    else:   # a pipe gets the table's lines alone
        note(where)
    return 0


def cmd_data_fetch(args) -> int:
    from pillars import data
    from pillars.config import ConfigError
    names = list(data.REGISTRY) if args.all else args.names
    if not names:
        raise ConfigError("name the datasets to fetch, or use --all (see `pillars data list`)")
    for name in names:
        data.get(name)
    for name in names:
        arrays = data.load(name, log=note)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()) or "files checked"
        console.print(f"[green]ok[/] {name}: {shapes}")
    return 0


def cmd_data_info(args) -> int:
    from pillars import data
    ds = data.get(args.name)
    lines = [f"{ds.name}: {ds.description}", f"  task kind: {ds.kind}", f"  size: {ds.size}",
             f"  licence: {ds.licence}", f"  cached: {'yes' if ds.is_cached() else 'no'} in {ds.raw_dir}",
             "  sources, tried in order: local cache, " + ", ".join(s.describe() for s in ds.sources),
             "  files (sha256, path inside the package, web address):"]
    lines += [f"    {f.name}\n      {f.sha256}\n      {f.inner}\n      {f.url or '-'}" for f in ds.files]
    lines += [f"  {key}: {value}" for key, value in ds.meta.items()]
    for line in lines:
        say(line)
    return 0


TEXT_KIND = "language modelling"   # the kind of pillars.data.text's corpora: one text each, what export writes


def cmd_data_export(args) -> int:
    """A text corpus as one UTF-8 file (for the text-file task, or any other tool); a set of photos or
    recordings (to try `pillars predict` on) as files in a folder."""
    import filecmp

    from pillars import data
    from pillars.config import ConfigError, write_text_atomic
    from pillars.data.registry import atomic_copy, unwritable
    from pillars.data.speech import RECORDINGS_KIND
    from pillars.data.text import as_text
    from pillars.data.vision import PHOTOS_KIND
    ds = data.get(args.name)
    of_files = {PHOTOS_KIND: "photos", RECORDINGS_KIND: "recordings"}   # kind -> its meta's key and word
    exported = [d.name for d in data.REGISTRY.values() if d.kind == TEXT_KIND or d.kind in of_files]
    if ds.kind != TEXT_KIND and ds.kind not in of_files:
        raise ConfigError(f"{args.name} is not a text corpus or a set of photos or recordings; export takes "
                          f"{', '.join(exported[:-1])} or {exported[-1]}")
    if ds.kind in of_files:
        folder, what = Path(args.out), of_files[ds.kind]
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is a file; {args.name} is a set of {what}: give a folder to write them to")
        why = unwritable(folder)
        if why:
            raise ConfigError(f"the folder {folder} {why}; choose another place")
        paths = data.fetch(args.name, log=note)
        theirs = [name for name, path in paths.items()
                  if (folder / name).exists() and not filecmp.cmp(path, folder / name, shallow=False)]
        if theirs:   # checked before the first copy: nothing is written
            raise ConfigError(f"{folder} already holds other files named {', '.join(theirs)}: data export never "
                              "replaces a file; delete them first, or choose another folder")
        for name, path in paths.items():
            if not (folder / name).exists():   # one already there holds the same bytes: it stays
                atomic_copy(path, folder / name)
            say(f"{folder / name}: {ds.meta[what][name]}")
        return 0
    out_file = Path(args.out)
    if out_file.is_dir():
        raise ConfigError(f"{out_file} is a folder; {args.name} is written as one text file: give its name "
                          f"(e.g. {out_file / (args.name + '.txt')})")
    output_file(out_file, "the file", "data export")
    text = as_text(data.load(args.name, log=note)["text"])
    write_text_atomic(out_file, text)
    say(f"wrote {len(text):,} characters of {args.name} to {args.out}")
    return 0


# ----------------------------------------------------------------------------- pillars list / train / evaluate

def cmd_list(args) -> int:
    from pillars import tasks
    if args.keys:
        from pillars import train
        defaults = train.default_config(tasks.get(args.keys))
        if args.json:
            print_json(defaults)
        else:
            print_table(["key", "default", "type"], [[k, str(v), type(v).__name__] for k, v in defaults.items()])
        return 0
    every = tasks.all_tasks().values()
    if args.json:
        print_json([{"name": t.name, "description": t.description, "dataset": t.dataset, "model": t.model,
                     "objective": t.objective, "metric": t.metric, "higher_is_better": t.higher_is_better}
                    for t in every])
    else:
        print_table(["task", "dataset", "model", "metric", "description"],
                    [[t.name, t.dataset, t.model, t.metric, t.description] for t in every])
    return 0


FLAG_KEYS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "seed": "seed",
             "device": "device", "precision": "precision", "max_steps": "max_steps"}


def _train_overrides(args) -> dict:
    from pillars import config
    overrides = config.parse_sets(args.set)
    for flag, key in FLAG_KEYS.items():
        if getattr(args, flag) is not None:
            overrides[key] = str(getattr(args, flag))
    if args.compile:
        overrides["compile"] = "true"
    return overrides


def cmd_train(args) -> int:
    from pillars import config, runs, train
    from pillars.train.distributed import decided_by_main
    overrides = _train_overrides(args)
    if args.resume:
        return resume(args, overrides)
    if not args.task:
        raise config.ConfigError("name a task (see `pillars list`), or --resume RUN_DIR")
    if args.config and Path(args.config).is_dir():
        raise config.ConfigError(f"--config {args.config} is a folder: give a TOML file of configuration keys")
    cfg = train.resolve_config(args.task, args.config, overrides)
    if cfg.get("data"):   # saved as an absolute path, so sample / explain / evaluate work from any folder
        cfg["data"] = str(Path(cfg["data"]).expanduser().resolve())
    if args.dry_run:   # one step and one evaluation batch, in a folder that is then removed
        cfg.update(max_steps=1, eval_batches=1)
        with tempfile.TemporaryDirectory(prefix="pillars-dry-run-") as tmp:
            summary = runs.start(args.task, cfg, Path(tmp), log=note, progress=False, baselines=False,
                                 whole_final_eval=False)
        console.print(f"dry run ok: {summary['final']}")
        return 0
    proc = train.init_process(cfg["device"])
    run_dir, earlier = decided_by_main(proc, lambda: runs.new_run_folder(args.task, args.out, args.runs, cfg))
    if earlier is not None:   # torchrun restarted its workers: continue the run they were training
        return exit_status(runs.start(args.task, cfg, run_dir, resume=earlier, log=note,
                                      progress=not args.no_progress))
    try:
        summary = runs.start(args.task, cfg, run_dir, log=note, progress=not args.no_progress, new=True)
    except BaseException:
        if proc.main and run_dir.is_dir() and not runs.foreign_files(run_dir) \
                and not (run_dir / "config.toml").exists():   # failed before writing anything: no folder left
            (run_dir / runs.LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
        raise
    return exit_status(summary)


def exit_status(summary: dict) -> int:
    """0 for a finished run; for one stopped by a signal after its checkpoint, 128 + the signal's number
    (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a program the signal ended."""
    return 128 + summary["signal"] if summary.get("status") == "interrupted" and summary.get("signal") else 0


def resume(args, overrides: dict) -> int:
    """`pillars train --resume RUN_DIR`: the run's saved configuration, changed only by the keys given."""
    from pillars import config, runs, train
    from pillars.weights import WeightsError
    clash = [flag for flag, given in (("--config", args.config), ("--out", args.out), ("--dry-run", args.dry_run))
             if given]
    if clash:
        raise config.ConfigError(f"--resume continues a run with its saved configuration and folder; it takes "
                                 f"no {', '.join(clash)}")
    run_dir = Path(args.resume)
    task_name, cfg = runs.saved_config(run_dir)   # a broken edit of config.toml names the file and the key
    if args.task and args.task != task_name:
        raise config.ConfigError(f"{run_dir} is a run of {task_name}, not {args.task}")
    edited = runs.config_edits(run_dir, task_name, cfg)
    if edited:
        console.print(f"[yellow]{escape(str(run_dir / 'config.toml'))} was edited since the run trained "
                      f"({escape(edited)}): the run is no longer an exact continuation[/]")
    changed = {k: v for k, v in config.apply_overrides(cfg, overrides, "the command line").items() if v != cfg[k]}
    if changed:
        console.print(f"[yellow]resuming with changed keys {escape(str(changed))}: the run is no longer an exact "
                      f"continuation[/]")
    saved, cfg = cfg, {**cfg, **changed}
    train.check_config(cfg, task_name)
    started = bool(train.checkpoints(run_dir))
    if not started:   # it stopped before its first checkpoint, or they were removed: it starts over
        note(f"{run_dir} has no checkpoint to continue from: training it from the start with its saved "
             f"configuration{keep_earlier_log(run_dir)}")
    try:
        return exit_status(runs.start(task_name, cfg, run_dir, resume=started, log=note,
                                      progress=not args.no_progress))
    except WeightsError as e:   # weights of another shape: keys changed here, or config.toml edited
        shaping = {k: v for k, v in changed.items() if k not in train.TRAINING_ONLY}   # max_steps, lr: not the cause
        if e.damaged or not shaping:
            raise runs.weights_misfit(e, run_dir, task_name, saved, None) from None
        raise config.ConfigError(f"{e.path} does not fit the model built with {shaping}: the run's shape cannot "
                                 "change on --resume; drop those keys, or train a new run with them") from None


def keep_earlier_log(run_dir: Path) -> str:
    """Move the log of a run that starts over aside (metrics-earlier-N.jsonl), and say so: what it logged
    before its checkpoints were lost, or before its first one, stays readable."""
    log = run_dir / "metrics.jsonl"
    if not log.is_file() or not log.read_text().strip():
        return ""
    k = 1
    while (run_dir / f"metrics-earlier-{k}.jsonl").exists():
        k += 1
    log.rename(run_dir / f"metrics-earlier-{k}.jsonl")
    return f" (the log of the earlier attempt is kept as {run_dir / f'metrics-earlier-{k}.jsonl'})"


def cmd_evaluate(args) -> int:
    from pillars import config, runs
    print_json(runs.evaluate(Path(args.run_dir), args.device, config.parse_sets(args.set), split=args.split,
                             log=note))
    return 0


# ----------------------------------------------------------------------------- trained runs: their family's hooks

def cmd_predict(args) -> int:
    from pillars import runs, tasks
    from pillars.config import ConfigError
    from pillars.weights import WeightsError
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1 (the number of classes, or boxes, to show), not {args.top_k}")
    run_dir = Path(args.run_dir)
    task_name, cfg = runs.saved_config(run_dir)
    try:
        tasks.get(task_name).family.predict(run_dir, cfg, args.images, args.top_k, args.invert, args.device, say)
    except WeightsError as e:   # weights of another shape: config.toml edited since the run trained?
        raise runs.weights_misfit(e, run_dir, task_name, cfg, None) from None
    return 0


def cmd_sample(args) -> int:
    from pillars import runs
    from pillars.config import ConfigError
    from pillars.tasks import SampleRequest
    for flag, value, valid, rule in (
            ("--length", args.length, args.length >= 1, "at least 1 (tokens to generate)"),
            ("--n", args.n, args.n is None or args.n >= 1, "at least 1 (samples to draw)"),
            ("--temperature", args.temperature, math.isfinite(args.temperature) and args.temperature >= 0,
             "a finite number of at least 0 (0: the most likely token every time)"),
            ("--top-k", args.top_k, args.top_k >= 0, "at least 0 (0: all tokens)"),
            ("--top-p", args.top_p, 0 <= args.top_p <= 1, "between 0 and 1 (0: off)")):
        if not valid:
            raise ConfigError(f"{flag} must be {rule}, not {value}")
    if args.out:
        args.out = str(output_file(Path(args.out), "--out", "sample"))
    run = runs.load(Path(args.run_dir), args.device, need_data=False, log=note)   # a language model needs no text
    request = SampleRequest(prompt=args.prompt, length=args.length, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, n=args.n, class_name=args.class_name, seed=args.seed, out=args.out)
    run.task.family.sample(run, request, say)
    return 0


def cmd_translate(args) -> int:
    from pillars import runs
    from pillars.config import ConfigError
    if args.beam < 1:
        raise ConfigError(f"--beam must be at least 1 (1: greedy), not {args.beam}")
    for i, sentence in enumerate(args.sentences, 1):
        if not sentence.strip():
            raise ConfigError(f"sentence {i} ({sentence!r}) is empty: give the text to translate, e.g. "
                              f"pillars translate {args.run_dir} \"Y dijo Dios: Sea la luz\"")
    run = runs.load(Path(args.run_dir), args.device, need_data=False, log=note)   # the vocabulary suffices
    translations = run.task.family.translate(run, args.sentences, args.beam)
    for sentence, translation in zip(args.sentences, translations):   # translations on stdout, one a line
        console.print(f"[dim]{escape(sentence)}[/]")
        print(translation, flush=True)
    return 0


def cmd_export(args) -> int:
    """The run as an ONNX model (pillars.export): RUN_DIR/model.onnx unless --out names the file."""
    from pillars import export
    out_file = output_file(Path(args.out), "--out", "export", suffix=".onnx") if args.out else None
    path = export.export_run(Path(args.run_dir), out_file, args.device, log=note)
    say(f"wrote {path}")
    return 0


def cmd_explain(args) -> int:
    from pillars import runs
    from pillars.config import ConfigError
    if args.source is not None and not args.source.strip():
        raise ConfigError(f"--source {args.source!r} is empty: give the sentence to translate, or leave --source "
                          "out for a held-out verse")
    run = runs.load(Path(args.run_dir), args.device, log=note)
    if args.source is not None and not run.task.family.explains_a_source:
        raise ConfigError(f"--source is for translation runs; {args.run_dir} is a run of {run.task.name} "
                          f"({run.task.family.what}): leave --source out")
    run.task.family.explain(run, log=say, source=args.source or "")
    return 0


def cmd_tour(args) -> int:
    from pillars import tour
    result = tour.tour(output_folder(Path(args.out)), budget=args.budget, full=args.full, device=args.device,
                       console=console, progress=not args.no_progress)
    if result is None:
        return 130
    if args.open:
        import webbrowser
        webbrowser.open(Path(result["report"]).resolve().as_uri())
    return 0


def cmd_demo(args) -> int:
    """The runs named (or those under runs/) on a local web page: pillars.demo, with Gradio."""
    from pillars import demo
    from pillars.config import ConfigError
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    demo.gradio()   # before anything is loaded: how to install the extra when it is missing
    run_dirs = [Path(p) for p in args.runs] if args.runs else demo.found_runs(Path("runs"))
    demo.serve(run_dirs, host=args.host, port=args.port, device=args.device, max_upload_mb=args.max_upload)
    return 0


EXPERIMENT_FLAGS = {"transfer-curve": ("labels", "seeds"), "text-transfer": ("labels", "seeds"),
                    "gan-augment": ("labels", "seeds"), "long-lag": ("lags", "seeds"), "translate-race": ()}


def cmd_experiment(args) -> int:
    from pillars import config, experiments
    if args.name not in experiments.EXPERIMENTS:
        raise config.ConfigError(config.unknown_name_message("experiment", args.name, experiments.EXPERIMENTS))
    if args.seeds is not None and args.seeds < 1:
        raise config.ConfigError("--seeds must be at least 1")
    folder = output_folder(Path(args.out or f"runs/{args.name}"))
    for flag in ("labels", "lags", "seeds"):
        if getattr(args, flag) is not None and flag not in EXPERIMENT_FLAGS[args.name]:
            takes = [name for name, flags in EXPERIMENT_FLAGS.items() if flag in flags]
            raise config.ConfigError(f"--{flag} is not an option of {args.name}"
                                     + (" (one run a model)" if not EXPERIMENT_FLAGS[args.name] else "")
                                     + f": drop it (it is one of {', '.join(takes)})")
    extra = config.parse_sets(args.set)
    show = {"transfer-curve": transfer_curve, "text-transfer": text_transfer, "gan-augment": gan_augment,
            "long-lag": long_lag, "translate-race": translate_race}[args.name]
    return show(args, folder, extra)


def _numbers(text: str, flag: str) -> tuple[int, ...]:
    from pillars.config import ConfigError
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes whole numbers separated by commas, not {text!r}") from None


def _cell(point: dict) -> str:
    """A mean ± std over seeds of an accuracy, as a table cell."""
    return f"{point['mean']:>8.2%} ± {point['std']:.1%}"


def _mean_std_experiment(args, folder: Path, extra: dict, run, default_labels, what: str, png: str):
    """Run an experiment of accuracies over seeds (--labels, --seeds) and say where its plot is: (table, labels);
    the table is empty when it was stopped."""
    labels = _numbers(args.labels, "--labels") if args.labels else default_labels
    seeds = 3 if args.seeds is None else args.seeds
    table = run(folder, labels, tuple(range(seeds)), extra, log=note)
    if table:
        say(f"{what}, mean ± std over {seeds} seeds  ->  {folder / png}")
    return table, labels


def transfer_curve(args, folder: Path, extra: dict) -> int:
    from pillars import experiments
    table, labels = _mean_std_experiment(args, folder, extra, experiments.transfer_curve, (10, 30, 100),
                                         "test accuracy", "transfer_curve.png")
    if not table:
        return 130
    say(f"{'labels/class':>12}  {'pretrained':>14}  {'scratch':>14}  {'gain':>6}")
    for n in labels:
        p, s = table["pretrained"][n], table["scratch"][n]
        say(f"{n:>12}  {_cell(p)}  {_cell(s)}  {100 * (p['mean'] - s['mean']):>+5.1f}")
    return 0


def text_transfer(args, folder: Path, extra: dict) -> int:
    from pillars import experiments
    table, labels = _mean_std_experiment(args, folder, extra, experiments.text_transfer, experiments.TEXT_LABELS,
                                         "movie-review test accuracy", "text_transfer.png")
    if not table:
        return 130
    say(f"{'labelled':>8}  {'scratch':>14}  {'pretrained':>14}  {'gain':>6}  {'+ in-domain':>14}  {'gain':>6}  "
        f"{'TF-IDF, same labels':>20}")
    for n in labels:
        s, p, d, t = (table[arm][n] for arm in ("scratch", "pretrained", "in-domain", "tfidf"))
        say(f"{n or table['all']:>8,}  {_cell(s)}  {_cell(p)}  {100 * (p['mean'] - s['mean']):>+5.1f}  {_cell(d)}  "
            f"{100 * (d['mean'] - s['mean']):>+5.1f}  {_cell(t):>20}")
    return 0


def gan_augment(args, folder: Path, extra: dict) -> int:
    from pillars import experiments
    table, labels = _mean_std_experiment(args, folder, extra, experiments.gan_augment,
                                         experiments.GAN_AUGMENT_LABELS, "Fashion-MNIST test accuracy",
                                         "gan_augment.png")
    if not table:
        return 130
    say(f"{'labels/class':>12}  {'alone':>14}  {'classic aug.':>14}  {'GAN images':>14}  {'GAN gain':>8}  "
        f"{'GAN: class asked for':>20}")
    for n in labels:
        real, classic, gan = (table[arm][n] for arm in ("real", "classic", "gan"))
        say(f"{n:>12}  {_cell(real)}  {_cell(classic)}  {_cell(gan)}  {100 * (gan['mean'] - real['mean']):>+8.1f}  "
            f"{_cell(table['gan_quality']['class_accuracy'][n]):>20}")
    return 0


def long_lag(args, folder: Path, extra: dict) -> int:
    from pillars import experiments
    lags = _numbers(args.lags or "25,50,100,200", "--lags")
    seeds = 1 if args.seeds is None else args.seeds
    table = experiments.long_lag(folder, lags, seeds=tuple(range(seeds)), extra=extra, log=note)
    if not table:
        return 130
    say(f"adding problem, test sequences solved (|error| < 0.04)  ->  {folder / 'long_lag.png'}")
    say(f"{'T':>5}  {'LSTM':>7}  {'tanh RNN':>8}   (always answering 1: {experiments.chance_success():.1%})")
    for lag in lags:
        say(f"{lag:>5}  {table['lstm'][lag]['mean']:>7.1%}  {table['rnn'][lag]['mean']:>8.1%}")
    return 0


def translate_race(args, folder: Path, extra: dict) -> int:
    from pillars import experiments
    table = experiments.translate_race(folder, extra=extra, log=note)
    if not table:
        return 130
    rows = table["models"]
    say(f"French to English, validation BLEU (greedy, every validation verse) after minutes of training  ->  "
        f"{folder / 'translate_race.png'}")
    say(f"{'':22}" + "".join(f"{str(m) + ' min':>9}" for m in table["marks_min"]) + f"{'trained':>10}{'pairs/s':>9}")
    for row in rows.values():
        cells = "".join(f"{'-' if b is None else f'{b:.1f}':>9}" for b in row["bleu_at"].values())
        say(f"{row['name']:22}{cells}{row['train_min']:>6.1f} min{row['pairs_per_s']:>9.1f}")
    say(f"{'leads':22}" + "".join(f"{rows[w]['name'].split()[0] if w in rows else w:>9}"
                                   for w in table["leader_at"].values()))
    for row in rows.values():
        if row["train_min"] < table["marks_min"][-1]:
            say(f"({row['name']} finished after {row['train_min']:.1f} minutes of training: its last figure stands "
                f"at the later marks)")
    for model, said in table["attention"].items():
        say(f"{rows[model]['name']}: {said['translation']}")
    say(f"the same held-out verse, {table['attention'][next(iter(rows))]['source']!r}: both cross-attention maps in "
        f"{folder / 'translate_race_attention.png'}")
    return 0


# ----------------------------------------------------------------------------- parser: one builder a subcommand

DEVICES = ["auto", "cpu", "cuda", "mps"]


def add_train(sub) -> None:
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
    t.add_argument("--precision", choices=["32", "bf16", "16", "auto"],
                   help="autocast precision; auto: bf16 where the device computes it natively, else 32")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--out", help="run folder (default: runs/TASK, runs/TASK-2, ...)")
    t.add_argument("--runs", default="runs", help="where new run folders go (default: ./runs)")
    t.add_argument("--dry-run", action="store_true", help="one step and one evaluation batch, then exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)


def add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluate a trained run on its test set (JSON on stdout)")
    e.add_argument("run_dir")
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument("--split", default="test", choices=["test", "valid"],
                   help="the test set (default) or the validation set")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an evaluation option, e.g. beam=4 (translation) or tta_flip=true (images)")
    e.set_defaults(fn=cmd_evaluate)


def add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="classify image files or WAV recordings, or find the objects in images, "
                                        "with a trained run")
    pr.add_argument("run_dir")
    pr.add_argument("images", nargs="+", metavar="FILE")
    pr.add_argument("--top-k", dest="top_k", type=int, default=None,
                    help="classifiers: the classes to show (default 3); detectors: at most this many boxes, best "
                         "first (default: every box scored 0.3 or more)")
    pr.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                    help="image classifiers only: invert the grey levels; auto: when the model was trained on light "
                         "objects on black (Fashion-MNIST, MNIST) and the photo's corners are light")
    pr.add_argument("--device", default="cpu", choices=DEVICES)
    pr.set_defaults(fn=cmd_predict)


def add_sample(sub) -> None:
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


def add_translate(sub) -> None:
    tr = sub.add_parser("translate", help="translate sentences with a trained translation run")
    tr.add_argument("run_dir")
    tr.add_argument("sentences", nargs="+", metavar="SENTENCE")
    tr.add_argument("--beam", type=int, default=4, help="beam width (1: greedy)")
    tr.add_argument("--device", default="cpu", choices=DEVICES)
    tr.set_defaults(fn=cmd_translate)


def add_export(sub) -> None:
    ex = sub.add_parser("export", help="a trained image classifier, language model or GAN generator as an ONNX model")
    ex.add_argument("run_dir")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="onnx (ONNX Runtime and other runtimes)")
    ex.add_argument("--out", help="the file to write (default: RUN_DIR/model.onnx)")
    ex.add_argument("--device", default="cpu", choices=DEVICES)
    ex.set_defaults(fn=cmd_export)


def add_explain(sub) -> None:
    ex = sub.add_parser("explain", help="experiments that show what a trained run learned (PNG files)")
    ex.add_argument("run_dir")
    ex.add_argument("--device", default="cpu", choices=DEVICES)
    ex.add_argument("--source", help="translation runs: the sentence whose cross-attention is "
                    "plotted (default: a held-out verse)")
    ex.set_defaults(fn=cmd_explain)


def add_tour(sub) -> None:
    to = sub.add_parser("tour", help="train a CNN, an LSTM, a Transformer and a GAN on real data and write a "
                                     "report of what each learned (15-30 minutes on 2 CPU cores)")
    to.add_argument("--budget", type=float, default=15.0,
                    help="about the minutes of the tour on 2 CPU cores with bf16 units (default 15; in fp32 the "
                         "training takes about twice as long): the networks' training scales with it; the "
                         "experiments and baselines add ~3 minutes whatever it is")
    to.add_argument("--full", action="store_true", help="the README's configurations, plus translation and the "
                                                        "transfer curve (hours on a CPU)")
    to.add_argument("--out", default="runs/tour", help="the tour's folder (default runs/tour); a second run "
                                                       "continues it")
    to.add_argument("--device", default="auto", choices=DEVICES)
    to.add_argument("--open", action="store_true", help="open the report in a web browser at the end")
    to.add_argument("--no-progress", action="store_true")
    to.set_defaults(fn=cmd_tour)


def add_demo(sub) -> None:
    de = sub.add_parser("demo", help="trained runs on a local web page, a tab each (needs the demo extra: "
                                     "pip install 'dl-pillars[demo]')")
    de.add_argument("runs", nargs="*", metavar="RUN", help="run folders (default: every run under ./runs)")
    de.add_argument("--port", type=int, default=7860, help="the port to serve the page on (default 7860)")
    de.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                                                        "only; 0.0.0.0: every network it is on)")
    de.add_argument("--max-upload", dest="max_upload", type=float, default=10, metavar="MB",
                    help="the largest upload accepted, in megabytes (default 10)")
    de.add_argument("--device", default="cpu", choices=DEVICES)
    de.set_defaults(fn=cmd_demo)


def add_experiment(sub) -> None:
    xp = sub.add_parser("experiment", help="experiments of several runs: transfer-curve, text-transfer, "
                                           "gan-augment, long-lag, translate-race")
    xp.add_argument("name", help="transfer-curve, text-transfer, gan-augment, long-lag or translate-race")
    xp.add_argument("--out", help="folder of the experiment's runs and plot (default: runs/NAME)")
    xp.add_argument("--labels", help="transfer-curve and gan-augment: labelled images per class, comma-separated "
                                     "(10,30,100); text-transfer: labelled snippets (100,300,1000,0; 0: all)")
    xp.add_argument("--lags", help="long-lag: sequence lengths, comma-separated (25,50,100,200)")
    xp.add_argument("--seeds", type=int, help="seeds per point (3; long-lag 1)")
    xp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a configuration key for every run (see `pillars list --keys fashion-transfer`, "
                         "`movie-sentiment-transfer`, `fashion-gan-augment`, `adding-problem` or "
                         "`bible-fr-en-translate`)")
    xp.set_defaults(fn=cmd_experiment)


def add_list(sub) -> None:
    ls = sub.add_parser("list", help="list tasks, or one task's configuration keys")
    ls.add_argument("--keys", metavar="TASK", help="print TASK's configuration keys and defaults")
    ls.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    ls.set_defaults(fn=cmd_list)


def add_data(sub) -> None:
    d = sub.add_parser("data", help="datasets: list, fetch, export, info")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("list", help="datasets with their kind, size, licence and cache state")
    dl.add_argument("--json", action="store_true", help="print JSON (for scripts)")
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


BUILDERS = (add_train, add_evaluate, add_predict, add_sample, add_translate, add_explain, add_export, add_tour,
            add_demo, add_experiment, add_list, add_data)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pillars", description="CNNs, LSTMs, Transformers and GANs on real data.")
    p.add_argument("--tasks", action="append", default=[], metavar="FILE",
                   help="a Python file that registers tasks of your own (repeatable; also $PILLARS_TASKS, "
                        "see docs/new_task.md)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in BUILDERS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from pillars.config import ConfigError
    from pillars.data.registry import DataError
    args = build_parser().parse_args(argv)
    try:
        if args.tasks:
            from pillars import tasks
            for path in args.tasks:
                tasks.load_file(path)
        return args.fn(args)
    except (ConfigError, DataError) as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except BrokenPipeError:   # the reader of a pipe stopped early (`pillars list | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nothing more for the closed pipe
        return 141   # as a program killed by SIGPIPE
    except RuntimeError as e:
        from pillars.train import NonFiniteLoss
        if not isinstance(e, NonFiniteLoss):
            raise
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 3


if __name__ == "__main__":
    sys.exit(main())
