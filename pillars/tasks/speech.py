"""Speech: recognising spoken digits from their MFCC frames, beside the classic recognisers.

An LSTM (or a BiLSTM) reads a recording's frames and names the digit from its final states. Before deep
networks, isolated words were recognised by comparing a recording with stored examples under dynamic time
warping (Sakoe & Chiba 1978), or by scoring it under one hidden Markov model per word with Gaussian-mixture
emissions (Rabiner 1989): both come from sequentia, fitted on the same training recordings and scored on
the same test recordings as the network.

A trained run names the digit of a WAV file (`pillars predict RUN clip.wav`): the clip's MFCCs are computed
as the packaged ones were (pillars.data.audio) and scaled by the run's training statistics, which it keeps in
inputs.json. With `--set data=DIR` the task trains on a user's own folder of class sub-folders of WAV files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pillars import explain, metrics
from pillars.baselines import cached_baselines, majority_accuracy
from pillars.config import ConfigError, note
from pillars.data.audio import MFCCSettings, wav_mfcc
from pillars.data.batches import TensorBatches
from pillars.devices import resolve_device
from pillars.models import rnn
from pillars.tasks import (TOP_CLASSES, Family, Job, LoadedRun, Task, check_choice, register,
                           trained_from_inputs)
from pillars.tasks.sequences import padded_loss, padded_sums

DIGITS = [str(d) for d in range(10)]


@dataclass
class SpokenDigitsOptions:
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.3
    bidirectional: bool = False  # a second stack reads each recording backwards (a BiLSTM)
    cell: str = "lstm"           # lstm, or rnn (tanh)
    data: str = ""               # a folder of class sub-folders of WAV files; "": the packaged digits

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "cell", ("lstm", "rnn"))


@dataclass
class SpeechInputs:
    """How a WAV file becomes the model's input, saved with a run as inputs.json: the MFCC settings, the
    training frames' mean and standard deviation per coefficient, the class names, and the frames of the
    longest training recording (0: not saved, by runs from before it was)."""
    mfcc: MFCCSettings
    mean: list[float]
    std: list[float]
    classes: list[str]
    longest_frames: int = 0

    @classmethod
    def from_json(cls, d: dict) -> "SpeechInputs":
        return cls(MFCCSettings(**d["mfcc"]), [float(v) for v in d["mean"]], [float(v) for v in d["std"]],
                   [str(c) for c in d["classes"]], int(d.get("longest_frames", 0)))


def padded_frames(recordings: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Standardised frames (N, longest, 13), zero after each recording's end, and the lengths (N,)."""
    lengths = np.array([len(r) for r in recordings])
    out = np.zeros((len(recordings), lengths.max(), recordings[0].shape[1]), dtype=np.float32)
    for row, r in enumerate(recordings):
        out[row, :len(r)] = (r - mean) / std
    return torch.from_numpy(out), torch.from_numpy(lengths)


def sequentia_form(recordings: list[np.ndarray], labels: np.ndarray, idx: np.ndarray, mean: np.ndarray,
                   std: np.ndarray) -> tuple[np.ndarray, ...]:
    """The recordings `idx`, standardised as the network's, in sequentia's form: (all their frames in one
    float64 array, their lengths, their digits)."""
    parts = [(recordings[i] - mean) / std for i in idx]
    return np.concatenate(parts).astype(np.float64), np.array([len(p) for p in parts]), labels[idx]


def sequentia_accuracy(model, train: tuple[np.ndarray, ...], test: tuple[np.ndarray, ...]) -> float:
    """The test accuracy of a sequentia classifier fitted on `train`; each split in `sequentia_form`."""
    (x, lengths, y), (test_x, test_lengths, test_y) = train, test
    model.fit(x, y, lengths=lengths)
    return float(np.mean(model.predict(test_x, lengths=test_lengths) == test_y))


def sequentia_baselines(train: tuple[np.ndarray, ...], test: tuple[np.ndarray, ...]) -> dict[str, float]:
    """The test accuracy of sequentia's DTW 1-nearest-neighbour classifier (full warping, no window) and of
    its HMM classifier with one Gaussian-mixture HMM per class at sequentia's defaults (5 left-right states,
    3 spherical components a state), left out where the HMMs cannot be fitted (too few training recordings
    of a class). About 2.5 minutes on one core for the digits: a minute of DTW (600 x 2,100 recordings), a
    minute and a half fitting the HMMs."""
    from sequentia.models import GaussianMixtureHMM, HMMClassifier, KNNClassifier
    hmm = HMMClassifier(variant=GaussianMixtureHMM, model_kwargs={"random_state": 0})
    out = {"dtw_knn_accuracy": sequentia_accuracy(KNNClassifier(k=1), train, test)}
    try:
        out["gmm_hmm_accuracy"] = sequentia_accuracy(hmm, train, test)
    except ValueError:   # hmmlearn: a state or component without training frames, its parameters NaN
        pass
    return out


def network(cfg: dict, inputs: SpeechInputs) -> rnn.SequenceClassifier:
    return rnn.SequenceClassifier(rnn.SequenceClassifierConfig(
        num_classes=len(inputs.classes), features=inputs.mfcc.n_mfcc, hidden=cfg["hidden"], layers=cfg["layers"],
        dropout=cfg["dropout"], cell=cfg["cell"], bidirectional=cfg["bidirectional"]))


def build_spoken_digits(cfg: dict, device: torch.device) -> Job:
    from pillars.data.speech import spoken_digits, wav_recordings
    check_choice(cfg, "cell", ("lstm", "rnn"))
    if cfg["data"]:
        recordings, labels, split, classes = wav_recordings(cfg["data"])
    else:
        (recordings, labels, split), classes = spoken_digits(), DIGITS
    train_frames = np.concatenate([recordings[i] for i in split["train"]])
    mean, std = train_frames.mean(0), train_frames.std(0)   # the training recordings' only

    def tensors(name: str) -> tuple[torch.Tensor, ...]:
        x, lengths = padded_frames([recordings[i] for i in split[name]], mean, std)
        return tuple(t.to(device) for t in (x, lengths, torch.from_numpy(labels[split[name]])))

    def baselines():
        train, test = (sequentia_form(recordings, labels, split[name], mean, std) for name in ("train", "test"))
        figures = cached_baselines("sequentia", lambda: sequentia_baselines(train, test), *train, *test,
                                   "sequentia 2.6.0: KNNClassifier(k=1), "
                                   "HMMClassifier(GaussianMixtureHMM(random_state=0))")
        if "gmm_hmm_accuracy" not in figures:
            fewest = np.bincount(labels[split["train"]]).min()
            note(f"the GMM-HMM baseline is left out: hmmlearn could not fit one HMM per class (a state or mixture "
                 f"component kept no training frames and its parameters became NaN), as happens with few or very "
                 f"alike training recordings of a class (the smallest class here has {fewest}; on the packaged "
                 "digits it fails with 10 of each and works with 30)")
        return {**figures, "majority_accuracy": majority_accuracy(labels[split["train"]], labels[split["test"]])}

    inputs = SpeechInputs(MFCCSettings(), mean.tolist(), std.tolist(), classes,
                          max(len(recordings[i]) for i in split["train"]))
    return Job(model=network(cfg, inputs), train=TensorBatches(tensors("train"), cfg["batch_size"], cfg["seed"]),
               valid=tensors("valid"), test=tensors("test"), loss=padded_loss, eval_sums=padded_sums,
               summary=metrics.classification_summary, inputs=inputs, baselines=baselines)


class SpokenDigitClassifier(Family):
    """Spoken-digit classifiers: accuracy beside DTW 1-NN, GMM-HMMs and the majority class, and the
    confusion matrix on the test recordings."""

    what = "spoken-digit classifier"
    baseline_names = {"dtw_knn_accuracy": ("DTW 1-nearest neighbour", "{:.2%}"),
                      "gmm_hmm_accuracy": ("GMM-HMM per digit", "{:.2%}"),
                      "majority_accuracy": ("majority class", "{:.2%}")}
    chance_keys = frozenset({"majority_accuracy"})
    report_figures = ("curves.png", "confusion.png")

    def headline(self, summary: dict) -> str:
        return f"{100 * summary['final']['accuracy']:.2f}% accuracy"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        x, lengths, y = run.job.test
        with torch.no_grad():
            pred = run.job.model.eval()(x, lengths).argmax(-1)
        classes = run.job.inputs.classes
        cm = explain.confusion_matrix(pred, y, len(classes))
        explain.plot_confusion(cm, classes, run.run_dir / "confusion.png")
        accuracy = float(np.trace(cm) / cm.sum())
        log(f"wrote {run.run_dir / 'confusion.png'} (accuracy {accuracy:.2%} on the {len(y)} test recordings)")
        return {"confusion": "confusion.png", "accuracy": accuracy}

    def predict(self, run_dir: Path, cfg: dict, paths: list[str], top_k: int | None, invert: str, device: str,
                log: Callable[[str], None]) -> None:
        """The `top_k` (default TOP_CLASSES) classes of each WAV file, with their probabilities."""
        if invert != "auto":
            raise ConfigError(f"--invert {invert} inverts the grey levels of images; {run_dir} is a {self.what}, "
                              "whose files are WAV recordings: leave --invert out")
        device = resolve_device(device)
        model, inputs = self.trained(Path(run_dir), cfg, device)
        for path in paths:
            probs = recording_probabilities(model, inputs, path, device)
            top = probs.topk(min(top_k or TOP_CLASSES, len(probs)))
            log(f"{path}")
            for p, i in zip(top.values.tolist(), top.indices.tolist()):
                log(f"  {inputs.classes[i]:<16} {p:6.1%}")

    def probabilities(self, run: LoadedRun, source, invert: str = "auto") -> torch.Tensor:
        """The class probabilities of one WAV file: what `predict` shows, for the Python API."""
        if invert != "auto":
            raise ConfigError(f"invert={invert!r} inverts the grey levels of images; {run.run_dir} is a {self.what}, "
                              "whose inputs are WAV recordings: leave invert out")
        return recording_probabilities(run.job.model.eval(), run.job.inputs, source, run.device)

    def trained(self, run_dir: Path, cfg: dict, device: torch.device) -> tuple[torch.nn.Module, SpeechInputs]:
        return trained_from_inputs(run_dir, cfg, device, SpeechInputs.from_json, network, build_spoken_digits)


@torch.no_grad()
def recording_probabilities(model: torch.nn.Module, inputs: SpeechInputs, path, device: torch.device) -> torch.Tensor:
    """The class probabilities of one WAV file: its MFCC frames, scaled by the training statistics. A file more
    than twice as long as the longest training recording gets a note: it is still read as one recording."""
    mean, std = np.array(inputs.mean, dtype=np.float32), np.array(inputs.std, dtype=np.float32)
    frames = wav_mfcc(path, inputs.mfcc)
    if inputs.longest_frames and len(frames) > 2 * inputs.longest_frames:
        seconds = inputs.mfcc.hop / inputs.mfcc.sample_rate
        note(f"note: {path} lasts {len(frames) * seconds:.1f} s, more than twice the longest training recording "
             f"({inputs.longest_frames * seconds:.1f} s); it is classified as one recording of one class: to "
             "classify several words or sounds, give each its own file")
    x, lengths = padded_frames([frames], mean, std)
    return model(x.to(device), lengths.to(device)).float().softmax(-1)[0].cpu()


register(Task(
    name="spoken-digits-lstm",
    description="which digit was said? An LSTM reads the MFCC frames of a recording (the Free Spoken Digit "
                "Dataset; --set bidirectional=true for a BiLSTM; --set data=DIR for your own folder of class "
                "sub-folders of WAV files), against sequentia's DTW nearest neighbour and one GMM-HMM per class "
                "on the same test recordings",
    dataset="spoken-digits (or your folder of WAV files: --set data=DIR)",
    model="LSTM classifier (2 x 128) over MFCC frames, padding never read (a BiLSTM packs)",
    objective="cross-entropy", metric="accuracy", options=SpokenDigitsOptions, build=build_spoken_digits,
    family=SpokenDigitClassifier(),
    defaults={"epochs": 30.0, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 600, "log_every": 50},
))
