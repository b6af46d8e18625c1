"""The Python API: train a task and use a trained run from a notebook or a script.

    import pillars
    summary = pillars.fit("fashion-cnn", out="runs/quick", width=8, max_steps=60)   # `pillars train`
    run = pillars.load("runs/quick")
    run.predict("shoe.jpg")          # {"Sneaker": 0.81, "Sandal": 0.12, ...}, most likely first

`pillars.fit` (Keras's and Lightning's word) because `pillars.train` is the package of the training loop.
A run is loaded as the command line loads it (`pillars.runs.load`) and its task's family does the work
(`pillars.tasks.Family`), as for `pillars predict`, `sample` and `translate`: the same conversions of a
user's input, the same checks and the same errors (a ConfigError naming the problem and the fix).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from pillars.tasks import LoadedRun, SampleRequest, Task


class Run:
    """A trained run: its network (`model`, in eval mode), task, configuration and summary, and what its
    task does with an input: `predict` (image and spoken-digit classifiers), `generate` (language models),
    `translate` (translation models), `sample` (GANs)."""

    def __init__(self, loaded: LoadedRun):
        self.loaded = loaded

    @property
    def model(self) -> nn.Module:
        return self.loaded.job.model

    @property
    def task(self) -> Task:
        return self.loaded.task

    @property
    def config(self) -> dict:
        return self.loaded.cfg

    @property
    def summary(self) -> dict | None:
        """summary.json: the test figures, the baselines; None for a run that has not finished."""
        from pillars.runs import summary_of
        return summary_of(self.loaded.run_dir)

    @property
    def run_dir(self) -> Path:
        return self.loaded.run_dir

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def __repr__(self) -> str:
        return f"<pillars run {self.run_dir} of {self.task.name} ({self.task.family.what}) on {self.device}>"

    def predict(self, source, invert: str = "auto") -> dict[str, float]:
        """The class probabilities of one input, most likely first: {class name: probability}. An image
        classifier takes an image file, a Pillow image or uint8 pixels (H, W) or (H, W, 3); pixels of the
        model's side are read as its training images (a Fashion-MNIST test image as it is), anything else
        is converted as `pillars predict` converts a photo (`invert`: "auto", "yes" or "no", as --invert).
        A spoken-digit classifier takes a WAV file."""
        from pillars.config import ConfigError
        if invert not in ("auto", "yes", "no"):
            raise ConfigError(f"invert must be \"auto\", \"yes\" or \"no\", not {invert!r}")
        self.model.eval()
        probs = self.task.family.probabilities(self.loaded, source, invert)
        classes = self.loaded.job.inputs.classes
        return {classes[i]: float(probs[i]) for i in probs.argsort(descending=True).tolist()}

    def generate(self, prompt: str = "", length: int = 300, temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 0.0, seed: int = 0, n: int | None = None) -> "str | list[str]":
        """A language model's continuation of `prompt` (a new paragraph when it is empty), the prompt
        included, sampled with `seed`; with `n`, a list of n continuations. The options are `pillars
        sample`'s (temperature 0: the most likely token every time)."""
        request = SampleRequest(prompt=prompt, length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                                n=n, seed=seed)
        texts = self.task.family.generated_texts(self.loaded, request)
        return texts[0] if n is None else texts

    def translate(self, sentences: "str | list[str]", beam: int = 4) -> "str | list[str]":
        """The translation of a sentence (or of each of a list), by beam search (`beam` 1: greedy)."""
        from pillars.config import ConfigError
        one = isinstance(sentences, str)
        items = [sentences] if one else list(sentences)
        if beam < 1:
            raise ConfigError(f"beam must be at least 1 (1: greedy), not {beam}")
        if not items or any(not s.strip() for s in items):
            raise ConfigError(f"give the sentences to translate, none of them empty, not {sentences!r}")
        out = self.task.family.translate(self.loaded, items, beam)
        return out[0] if one else out

    def sample(self, n: int = 64, class_name: str = "", seed: int = 0) -> torch.Tensor:
        """`n` images drawn by a GAN's generator from seeded noise, (n, C, H, W) in [0, 1] on the CPU; of
        class `class_name` (a name or a number) for a conditional GAN, which without it draws every class in
        turn."""
        request = SampleRequest(n=n, class_name=class_name, seed=seed)
        return self.task.family.generated_images(self.loaded, request)[0].cpu()


def load(run_dir: "str | Path", device: str = "cpu") -> Run:
    """The trained (or checkpointed) run in `run_dir`, with its weights, on `device` ("cpu", "cuda", "mps"
    or "auto"). A language model whose text has moved is loaded from its saved vocabulary."""
    from pillars import runs
    from pillars.config import note
    loaded = runs.load(Path(run_dir), device, need_data=False, log=note)
    loaded.job.model.eval()
    return Run(loaded)


def fit(task: str, out: "str | Path | None" = None, runs_dir: "str | Path" = "runs", progress: bool = False,
          **keys) -> dict:
    """Train `task` with its defaults changed by `keys` (those of `pillars list --keys TASK`, e.g. width=8,
    max_steps=60), as `pillars train TASK --out OUT --set KEY=VALUE` does, into `out` (a new or empty
    folder; default runs/TASK, runs/TASK-2, ... under `runs_dir`). Returns the run's summary, with the
    folder under "run_dir"."""
    from pillars import runs
    from pillars import train as loop
    from pillars.config import note
    cfg = loop.resolve_config(task, overrides=keys)
    if cfg.get("data"):   # saved as an absolute path, as the command line saves it
        cfg["data"] = str(Path(cfg["data"]).expanduser().resolve())
    run_dir, _ = runs.new_run_folder(task, out, runs_dir, cfg)
    summary = runs.start(task, cfg, run_dir, log=note, progress=progress, new=True)
    return {**summary, "run_dir": str(run_dir)}
