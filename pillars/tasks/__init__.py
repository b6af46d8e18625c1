"""Tasks: each one a short recipe of dataset + model + objective + metric, with its family's behaviour.

A task names its own configuration keys (a dataclass of options) and its changes to the defaults;
`build` turns a resolved configuration into a `Job`, which is all the training loop needs. Its `family`
carries what the front ends do with a trained run of it (explain, sample, predict, translate, the tour's
figures, the headline and baselines as text), so `pillars` and the tour never look inside a model.

The recipes live by kind in this package's modules (`images`, `language`, `sequences`, `translation`,
`generative`), found when a task is first asked for. A user's own tasks come from Python files named in
$PILLARS_TASKS (separated by os.pathsep) or by `pillars --tasks FILE`, and from installed packages that
declare an entry point in the group `pillars.tasks`: importing such a module registers its tasks with
`register`. docs/new_task.md adds one.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from pillars.config import ConfigError, unknown_name_message
from pillars.data.batches import TensorBatches


@dataclass
class Job:
    """What the training loop trains: a model, data on the device, an objective and a metric.

    `valid` and `test` are tuples of tensors with the same first dimension (what `eval_sums` reads):
    periodic evaluations, the best figure and every choice made from data read `valid`; the test set is
    read once, at the end."""
    model: nn.Module
    train: TensorBatches
    valid: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    loss: Callable[[nn.Module, tuple], torch.Tensor]                  # mean loss of one batch
    eval_sums: Callable[[nn.Module, tuple], dict[str, torch.Tensor]]  # additive sums of one batch
    summary: Callable[[dict[str, float]], dict[str, float]]          # sums of the set -> figures
    conv: bool = False    # a conv net: trained in channels_last memory format
    inputs: object = None   # how a user's files become model inputs (ImageInputs, SpeechInputs): predict, explain
    tokenizer: object = None              # text tasks: a data.tokenizers.Tokenizer, saved as tokenizer.json
    baselines: "Callable[[], dict[str, float]] | None" = None   # non-neural figures on the same test set
    tokens_per_sample: int = 0   # text tasks: tokens in one training example, to report tokens/s
    images: "Callable[[nn.Module], torch.Tensor] | None" = None   # a (C, H, W) grid in [0, 1] written at
    #                                      every evaluation to samples/step-N.png and TensorBoard (GANs)
    outputs: "Callable[[str, dict], dict[str, str]] | None" = None   # (split, the sums of an evaluation of it) ->
    #                                      files (name -> text) written into the run folder (a translation's outputs)


@dataclass
class LoadedRun:
    """A trained (or checkpointed) run rebuilt with its weights: what the front ends and families get."""
    run_dir: Path
    task: "Task"
    cfg: dict
    job: Job
    device: torch.device


@dataclass(frozen=True)
class Requirement:
    """A run that a task needs trained before its own (the GAN metrics' classifier): trained once by the
    run lifecycle into `folder` with the task's defaults changed by `overrides`, then reused."""
    task: str
    overrides: dict
    folder: Path


@dataclass
class SampleRequest:
    """The options of `pillars sample`; a family uses those that apply to it and refuses the others."""
    prompt: str = ""
    length: int = 300
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 0.0
    n: int | None = None
    class_name: str = ""
    seed: int = 0
    out: str | None = None


TOP_CLASSES = 3   # the classes `pillars predict` shows for a classifier without --top-k


class Family:
    """What the front ends do with a trained run of a task. The base class is a model family with no
    special behaviour: its methods say what the run cannot do, and its text is the plain metric."""

    what = "model"                               # how errors name a run of this family
    baseline_names: dict[str, tuple[str, str]] = {}   # summary["baselines"] key -> (name, format)
    chance_keys: frozenset = frozenset()         # the baselines that say what no learning at all scores
    report_figures: tuple[str, ...] = ("curves.png",)   # the tour's report: files of the run folder, in order
    explains_a_source = False   # explain's --source: a sentence of the user's whose attention it plots

    def headline(self, summary: dict) -> str:
        """A run's headline figure on the test set as text, e.g. "94.56% accuracy"."""
        f = summary["final"]
        return f"{summary['metric']} {f[summary['metric']]:.4g}"

    def chance(self, summary: dict) -> str:
        """What no learning at all scores, as text ("" when the task has no such figure)."""
        return self.baselines_text(summary, "chance")

    def baselines_text(self, summary: dict, which: str = "all") -> str:
        """The run's baselines on the same test set as text; `which`: "all", "baselines" (models to beat)
        or "chance" (what no learning scores)."""
        b = summary.get("baselines", {})
        parts = []
        for key, (name, fmt) in self.baseline_names.items():
            if key not in b or (which == "baselines" and key in self.chance_keys) or (
                    which == "chance" and key not in self.chance_keys):
                continue
            parts.append(f"{name} {fmt.format(b[key])}")
        return "; ".join(parts)

    def files(self, job: Job) -> dict[str, str]:
        """Text files saved beside the weights (name -> contents): what turns a user's input into the model's
        (the vocabulary of a text task, the image conventions of an image task)."""
        out = {}
        if job.tokenizer is not None:
            out["tokenizer.json"] = json.dumps(job.tokenizer.to_json(), ensure_ascii=False)
        if job.inputs is not None:
            out["inputs.json"] = json.dumps(dataclasses.asdict(job.inputs), indent=2) + "\n"
        return out

    def saved_job(self, run_dir: Path, cfg: dict, device: torch.device) -> Job | None:
        """The run rebuilt from its saved files alone (no data), for sampling when its data has moved; None
        where the family cannot, or need not (the task then rebuilds the run from its data)."""
        return None

    @staticmethod
    def moved_data_vocabulary(run_dir: Path, cfg: dict):
        """(tokenizer.json, the vocabulary it holds) of a run whose own data file (--set data=FILE) is no
        longer where it trained, for a `saved_job`; None when the file is there or no vocabulary was saved."""
        from pillars.data import tokenizers
        saved = Path(run_dir) / "tokenizer.json"
        if not cfg["data"] or Path(cfg["data"]).expanduser().is_file() or not saved.exists():
            return None
        return saved, tokenizers.load(saved)

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        """The experiments that show what the run learned: writes PNG files into the run folder, prints what
        it wrote through `log`, returns the figures as a dict."""
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): explain has experiments for "
                          "image classifiers, language models, translation models, GANs and forecasters")

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        """What the tour's report shows of the run beyond its figures (samples, translations)."""
        return {"explain": self.explain(run, log, light=light)}

    def sample(self, run: LoadedRun, request: SampleRequest, log: Callable[[str], None]) -> None:
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): sample takes runs of "
                          "language models and GANs")

    def translate(self, run: LoadedRun, sentences: list[str], beam: int) -> list[str]:
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): translate takes runs of "
                          "bible-translate and bible-fr-en-translate")

    def predict(self, run_dir: Path, cfg: dict, paths: list[str], top_k: int | None, invert: str, device: str,
                log: Callable[[str], None]) -> None:
        raise ConfigError(f"{run_dir} holds a {self.what}, not a classifier: predict takes runs of image "
                          "classifiers, spoken-digit classifiers and object detectors (pillars evaluate and explain "
                          "take any run)")

    def probabilities(self, run: LoadedRun, source, invert: str = "auto") -> torch.Tensor:
        """The class probabilities of one input (an image, a recording), in the order of the run's classes
        (`run.job.inputs.classes`): what `predict` shows, for the Python API."""
        raise ConfigError(f"{run.run_dir} holds a {self.what}, not a classifier: predict takes runs of image "
                          "classifiers and spoken-digit classifiers")

    def generated_texts(self, run: LoadedRun, request: SampleRequest) -> list[str]:
        """A language model's continuations of `request.prompt`: what `sample` shows, for the Python API."""
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): generate takes runs of "
                          "language models")

    def generated_images(self, run: LoadedRun, request: SampleRequest) -> tuple[torch.Tensor, str]:
        """A GAN's images (n, C, H, W) in [0, 1], and what they are: what `sample` draws, for the Python API."""
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): sample takes runs of GANs "
                          "(a language model's text: generate)")

    def graph(self, run: LoadedRun):
        """What `pillars export` writes as an ONNX model: a pillars.export.Graph."""
        raise ConfigError(f"{run.run_dir} is a run of {run.task.name} ({self.what}): export takes runs of image "
                          "classifiers, language models and GANs")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    dataset: str
    model: str
    objective: str
    metric: str                     # the key of `summary` that names the task's result
    options: type                   # dataclass of the task's own configuration keys
    build: Callable[..., Job]       # build(cfg, device), or build(cfg, device, needs) with `requires`
    defaults: dict = field(default_factory=dict)   # the task's changes to the loop's and options' defaults
    higher_is_better: bool = True
    family: Family = field(default_factory=Family)
    # runs needed first, by name; `build` then gets `needs`: name -> a function returning the LoadedRun
    requires: "Callable[[dict], dict[str, Requirement]] | None" = None

    def make_job(self, cfg: dict, device: torch.device, needs: dict | None = None) -> Job:
        return self.build(cfg, device, needs or {}) if self.requires else self.build(cfg, device)


def trained_from_inputs(run_dir: Path, cfg: dict, device: torch.device, read_inputs: Callable[[dict], object],
                        network: Callable[[dict, object], nn.Module], build: Callable[..., Job]) -> tuple[nn.Module, object]:
    """A run's trained network and its inputs (how a user's file becomes the model's input: `Job.inputs`,
    saved as inputs.json and read back by `read_inputs`), rebuilt by `network` without reading the training
    data, which may have moved; a run trained before runs kept inputs.json is rebuilt by `build` from it."""
    from pillars.data.registry import DataError
    from pillars.weights import load_weights, weights_path
    weights, saved = weights_path(run_dir), run_dir / "inputs.json"
    if saved.exists():
        try:
            inputs = read_inputs(json.loads(saved.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{saved} is damaged ({type(e).__name__}: {e}); it is written by pillars train and "
                              "should not be edited. Delete it: it is rebuilt from the run's training data, read "
                              "again from where the run found it") from None
        model = network(cfg, inputs).to(device)
    else:
        try:
            job = build(cfg, device)
        except DataError as e:
            raise DataError(f"{run_dir} was trained before runs kept their inputs.json, so its training data is "
                            f"read again to rebuild it, and that failed: {e}") from None
        model, inputs = job.model.to(device), job.inputs
    load_weights(model, weights)
    return model.eval(), inputs


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def check_choice(cfg: dict, key: str, choices: tuple[str, ...]) -> None:
    if cfg[key] not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {cfg[key]!r}")


def get(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise ConfigError(unknown_name_message("task", name, tasks))
    return tasks[name]


_loaded: set[str] = set()


def all_tasks() -> dict[str, Task]:
    """Every registered task: this package's modules, then $PILLARS_TASKS files, then entry points."""
    if "package" not in _loaded:
        _loaded.add("package")
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
    for path in filter(None, os.environ.get("PILLARS_TASKS", "").split(os.pathsep)):
        load_file(path)
    if "entry_points" not in _loaded:
        _loaded.add("entry_points")
        from importlib.metadata import entry_points
        for ep in entry_points(group="pillars.tasks"):
            try:
                ep.load()
            except Exception as e:   # a broken plug-in names itself instead of breaking every command
                raise ConfigError(f"the task plug-in {ep.name!r} ({ep.value}) failed to load: {e}") from e
    return TASKS


def load_file(path: str | Path) -> None:
    """Register the tasks of a user's Python file (once per file)."""
    path = Path(path).expanduser().resolve()
    if str(path) in _loaded:
        return
    if not path.is_file():
        raise ConfigError(f"task file {path} does not exist (named in $PILLARS_TASKS or by --tasks)")
    name = f"pillars_user_tasks_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _loaded.add(str(path))
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as e:
        _loaded.discard(str(path))
        del sys.modules[name]
        raise ConfigError(f"task file {path} failed to load: {type(e).__name__}: {e}") from e
