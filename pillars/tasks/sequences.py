"""Sequence problems for recurrent networks: long time lags, forecasting, sentiment.

Validation sets: the adding problem draws its own from a fixed seed; a forecaster holds out the period just
before the test period (which stays the last part of the series); the movie reviews have a valid split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pillars import explain, metrics
from pillars.config import ConfigError, Range, check_multiple
from pillars.data.batches import TensorBatches
from pillars.data.registry import InputFileError
from pillars.models import rnn
from pillars.tasks import Family, Job, LoadedRun, Task, check_choice, register


@dataclass
class AddingOptions:
    lag: int = 100               # sequence length T: one marked value in each half, so the first lies T/2 to T back
    cell: str = "lstm"           # lstm, or rnn (tanh): the network the LSTM was invented to replace
    hidden: int = 64
    layers: int = 1
    fused: bool = True
    forget_bias: float = 1.0     # LSTM: initial forget-gate bias (Gers et al. 2000 use 1; larger remembers longer)
    test_sequences: int = 2000   # in the test set, and as many in the validation set

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "cell", ("lstm", "rnn"))


# the validation sequences' seed: fixed, so every run at a lag shares them (the test's is 2**40 + the run's
# seed, as it always was; training batches are seeded by the seed and the step)
ADDING_VALID_SEED = 2 ** 41 + 12345


def build_adding(cfg: dict, device: torch.device) -> Job:
    from pillars.data.synthetic import AddingBatches, adding_problem
    check_choice(cfg, "cell", ("lstm", "rnn"))
    if cfg["lag"] < 4:
        raise ConfigError(f"lag must be at least 4 steps, not {cfg['lag']}")
    valid = adding_problem(cfg["test_sequences"], cfg["lag"], torch.Generator().manual_seed(ADDING_VALID_SEED))
    test = adding_problem(cfg["test_sequences"], cfg["lag"], torch.Generator().manual_seed(2 ** 40 + cfg["seed"]))
    model = rnn.Forecaster(rnn.ForecasterConfig(features=2, horizon=1, hidden=cfg["hidden"], layers=cfg["layers"],
                                                cell=cfg["cell"], fused=cfg["fused"], residual=False,
                                                forget_bias=cfg["forget_bias"]))

    def loss(model, batch):
        x, y = batch
        return F.mse_loss(model(x).float(), y)

    def eval_sums(model, batch):
        return metrics.regression_sums(model(batch[0]), batch[1], tolerance=0.04)

    def baselines():   # always answering 1, the mean of the sum: what no learning at all scores
        sums = metrics.regression_sums(torch.ones_like(test[1]), test[1], tolerance=0.04)
        figures = metrics.regression_summary({k: v.item() for k, v in sums.items()})
        return {f"always_one_{k}": v for k, v in figures.items()}

    return Job(model=model, train=AddingBatches(cfg["lag"], cfg["batch_size"], cfg["seed"], device),
               valid=tuple(t.to(device) for t in valid), test=tuple(t.to(device) for t in test), loss=loss,
               eval_sums=eval_sums, summary=metrics.regression_summary, baselines=baselines)


class AddingProblem(Family):
    """The adding problem: the share of test sequences solved, beside always answering 1."""

    what = "adding-problem run"
    baseline_names = {"always_one_success": ("always answering 1", "{:.1%} solved")}
    chance_keys = frozenset(baseline_names)

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        return f"{f['success']:.1%} of sequences solved (|error| < 0.04), MSE {f['mse']:.4f}"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        raise ConfigError(f"{run.run_dir} is an adding-problem run: explain has experiments for image classifiers, "
                          "language models, translation models, GANs and forecasters; for the adding problem see "
                          "`pillars experiment long-lag`")

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        return {}


register(Task(
    name="adding-problem",
    description="Hochreiter & Schmidhuber's adding problem: sum two marked values, one in each half of a "
                "sequence of `lag` steps",
    dataset="synthetic (fresh sequences every step)", model="LSTM (1 x 64) or tanh RNN, linear read-out",
    objective="mean squared error", metric="success", options=AddingOptions, build=build_adding,
    family=AddingProblem(),
    defaults={"max_steps": 10000, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.0, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_every": 500, "eval_batch_size": 500, "log_every": 100},
))


# ----------------------------------------------------------------------------- forecasting

@dataclass
class ForecastOptions:
    data: str = ""               # a CSV of your own series instead of the weather data
    column: str = ""             # with data=FILE: the column to forecast (name or 0-based position)
    station: str = "greensboro"  # weather: greensboro (NC) or sand-point (AK)
    variable: str = "temperature"   # weather: the variable to forecast
    season: int = 0              # seasonal period in steps (0: 24 for the weather, inferred for a CSV)
    history: int = 168           # steps the model sees (a week of hours)
    horizon: int = 24            # steps it predicts at once (a day)
    test_fraction: float = 0.2   # the last part of the series is the held-out test period
    valid_fraction: float = 0.1  # the part just before it is the validation period (not trained on)
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.0
    cell: str = "lstm"

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before the series is read: the choices, the periods, and a season the history holds (an inferred
        one, season=0, is checked once the series is read)."""
        from pillars.data.series import WEATHER_COLUMNS, WEATHER_STATIONS
        check_choice(cfg, "cell", ("lstm", "rnn"))
        if not cfg["data"]:
            check_choice(cfg, "station", tuple(WEATHER_STATIONS))
            check_choice(cfg, "variable", tuple(WEATHER_COLUMNS))
        if cfg["test_fraction"] + cfg["valid_fraction"] >= 1:
            raise ConfigError(f"test_fraction {cfg['test_fraction']} and valid_fraction {cfg['valid_fraction']} "
                              "leave nothing to train on (together they must be below 1): lower one of them")
        check_season(cfg["season"] or (0 if cfg["data"] else 24), cfg["history"])   # the weather's: 24 hours


def check_season(season: int, history: int) -> None:
    """A seasonal period (0: not known yet) that the history holds."""
    if season and not 1 <= season <= history:
        raise ConfigError(f"season {season} must be between 1 and the history ({history}): the seasonal-naive "
                          "forecast copies the last season of the history; set --set season=N or a longer "
                          "--set history=N")


@dataclass
class ForecastJob(Job):
    mean: float = 0.0            # the series' normalisation (training period): model units -> the series' own
    std: float = 1.0
    season: int = 1              # the seasonal period in steps
    series: str = ""             # what is forecast, for the figures


def forecast_series(cfg: dict) -> tuple[np.ndarray, int]:
    """(series, seasonal period) from the weather data or the user's CSV (the period inferred before the test
    period, once the column is known to be long enough and not constant)."""
    from pillars.data import series
    if not cfg["data"]:
        return series.weather(cfg["station"], cfg["variable"]), cfg["season"] or 24
    if not cfg["column"]:
        raise ConfigError("give the column to forecast with --set column=NAME (a name from the CSV's first line)")
    values = series.load_csv_series(cfg["data"], cfg["column"])
    what = f"{cfg['data']}: column {cfg['column']!r}"
    if not periods_fit(len(values), cfg):
        raise InputFileError(f"{what} has {len(values)} values, too few for {periods_text(cfg)}: it needs at least "
                             f"{values_needed(cfg, len(values))}; give a longer series, or lower --set history=N "
                             "or horizon=N")
    if np.ptp(values) == 0:
        raise InputFileError(f"{what} holds one value, {values[0]:g}, throughout: there is nothing to forecast "
                             "and MASE is undefined; check --set column")
    season = cfg["season"] or series.infer_season(values[:int(len(values) * (1 - cfg["test_fraction"]))])
    if not season:
        raise ConfigError(f"no seasonal period shows in {what}: give one with --set season=N (1 for none)")
    return values, int(season)


def forecast_series_name(cfg: dict) -> str:
    return f"{cfg['data']}: {cfg['column']}" if cfg["data"] else f"{cfg['variable']} at {cfg['station']}"


def windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return values[starts[:, None] + np.arange(length)]


def period_bounds(n: int, cfg: dict) -> tuple[int, int]:
    """Where validation starts and where the test starts in a series of `n` values."""
    return (int(n * (1 - cfg["test_fraction"] - cfg["valid_fraction"])), int(n * (1 - cfg["test_fraction"])))


def periods_fit(n: int, cfg: dict) -> bool:
    """Whether `n` values hold 100 training windows, and a horizon each of validation and test."""
    valid_from, test_from = period_bounds(n, cfg)
    return (valid_from - cfg["history"] - cfg["horizon"] >= 100 and test_from - valid_from >= cfg["horizon"]
            and n - test_from >= cfg["horizon"])


def periods_text(cfg: dict) -> str:
    return (f"a history of {cfg['history']} and a horizon of {cfg['horizon']} with test_fraction "
            f"{cfg['test_fraction']} and valid_fraction {cfg['valid_fraction']}")


def values_needed(cfg: dict, n: int) -> int:
    """The fewest values above `n` that fit the periods (`periods_fit`), searched up from a lower bound of each
    condition (the periods' rounding moves each by at most one value)."""
    H, F_, test, valid = cfg["history"], cfg["horizon"], cfg["test_fraction"], cfg["valid_fraction"]
    m = max(int((H + F_ + 100) / (1 - test - valid)), int((F_ - 1) / valid), int((F_ - 1) / test), n + 1) - 1
    while not periods_fit(m, cfg) or m <= n:
        m += 1
    return m


def forecast_periods(n: int, cfg: dict) -> tuple[int, int, dict[str, np.ndarray]]:
    """(where validation starts, where the test starts, the start of every window by split) for a series of
    `n` values, in time order: train | valid | test. A window belongs to the period its forecast lies in;
    its history may reach back into the period before, as a forecaster's would."""
    H, F_ = cfg["history"], cfg["horizon"]
    if not periods_fit(n, cfg):
        raise ConfigError(f"the series has {n} values: too few for {periods_text(cfg)} (it needs at least "
                          f"{values_needed(cfg, n)}); lower --set history=N or horizon=N")
    valid_from, test_from = period_bounds(n, cfg)
    return valid_from, test_from, {"train": np.arange(0, valid_from - H - F_ + 1),
                                   "valid": np.arange(valid_from - H, test_from - H - F_ + 1),
                                   "test": np.arange(max(0, test_from - H), n - H - F_ + 1)}


def build_forecast(cfg: dict, device: torch.device) -> ForecastJob:
    from pillars.baselines import naive_forecast, seasonal_naive_forecast
    for key in ("test_fraction", "valid_fraction"):
        if not 0 < cfg[key] < 1:
            raise ConfigError(f"{key} must be between 0 and 1, not {cfg[key]}")
    check_choice(cfg, "cell", ("lstm", "rnn"))
    values, season = forecast_series(cfg)
    H, F_ = cfg["history"], cfg["horizon"]
    valid_from, test_from, starts = forecast_periods(len(values), cfg)
    check_season(season, H)
    train_vals, before_test = values[:valid_from], values[:test_from]
    mean, std = float(train_vals.mean()), float(train_vals.std() or 1.0)
    # MASE scale: the in-sample mean absolute error of the seasonal-naive forecast over everything before the
    # test period (the seasonal form of Hyndman & Koehler 2006, as in the M4 competition)
    scale = float(np.mean(np.abs(before_test[season:] - before_test[:-season])))
    if scale == 0:
        raise ConfigError(f"{forecast_series_name(cfg)}: the series before the test period repeats exactly every "
                          f"{season} steps, so MASE is undefined; check the column, or the season")
    phase = 2 * np.pi * np.arange(len(values)) / max(season, 1)
    inputs = np.stack([(values - mean) / std, np.sin(phase), np.cos(phase)], axis=-1).astype(np.float32)
    if season <= 1:
        inputs = inputs[:, :1]
    target = ((values - mean) / std).astype(np.float32)

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(windows(inputs, starts[split], H))
        y = torch.from_numpy(windows(target, starts[split] + H, F_))
        return x.to(device), y.to(device)

    model = rnn.Forecaster(rnn.ForecasterConfig(features=inputs.shape[1], horizon=F_, hidden=cfg["hidden"],
                                                layers=cfg["layers"], dropout=cfg["dropout"], cell=cfg["cell"]))

    def loss(model, batch):
        x, y = batch
        return F.mse_loss(model(x).float(), y)

    def eval_sums(model, batch):
        x, y = batch
        err = (model(x).float() - y) * std
        return {"abs_sum": err.abs().sum(), "sq_sum": err.pow(2).sum(),
                "count": torch.tensor(float(err.numel()), device=err.device)}

    def summary(sums):
        n = max(sums["count"], 1.0)
        mae = sums["abs_sum"] / n
        return {"mae": mae, "rmse": (sums["sq_sum"] / n) ** 0.5, "mase": mae / scale}

    def baselines():
        history = windows(values, starts["test"], H)
        actual = windows(values, starts["test"] + H, F_)
        out = {}
        for name, pred in (("naive", naive_forecast(history, F_)),
                           ("seasonal_naive", seasonal_naive_forecast(history, F_, season))):
            err = pred - actual
            out[f"{name}_mae"] = float(np.abs(err).mean())
            out[f"{name}_rmse"] = float(np.sqrt((err ** 2).mean()))
            out[f"{name}_mase"] = float(np.abs(err).mean() / scale)
        return out

    return ForecastJob(model=model, train=TensorBatches(tensors("train"), cfg["batch_size"], cfg["seed"]),
                       valid=tensors("valid"), test=tensors("test"), loss=loss, eval_sums=eval_sums, summary=summary,
                       baselines=baselines, mean=mean, std=std, season=season, series=forecast_series_name(cfg))


class Forecaster(Family):
    """Forecasters: MASE beside the naive and seasonal-naive forecasts, and forecasts.png."""

    what = "forecaster"
    baseline_names = {"seasonal_naive_mase": ("seasonal naive", "MASE {:.3f}"),
                      "naive_mase": ("naive", "MASE {:.3f}")}
    report_figures = ("curves.png", "forecasts.png")

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        return f"MASE {f['mase']:.3f} (MAE {f['mae']:.2f})"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        explain.plot_forecasts(run.job, run.run_dir / "forecasts.png")
        log(f"wrote {run.run_dir / 'forecasts.png'}")
        return {"forecasts": "forecasts.png"}


register(Task(
    name="weather-lstm",
    description="forecast the next 24 hours of temperature from the past week (pvlib's TMY3 hourly weather; "
                "the last 20% of the year held out for testing, the 10% before it for validation), against "
                "naive and seasonal-naive forecasts",
    dataset="weather", model="LSTM forecaster (2 x 64), direct 24-step output", objective="mean squared error",
    metric="mase", options=ForecastOptions, higher_is_better=False, build=build_forecast, family=Forecaster(),
    defaults={"epochs": 8.0, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))


# ----------------------------------------------------------------------------- sentiment

@dataclass
class SentimentOptions:
    vocab_size: int = 8000       # the most frequent training words; the rest become <unk>
    max_words: int = 64          # longer snippets are cut
    embed: int = 128
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.4
    cell: str = "lstm"

    ranges = {"vocab_size": Range(3, hint="<pad>, <unk> and the most frequent training words: at least one word")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "cell", ("lstm", "rnn"))


def padded(tok, texts: list[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-padded with 0 to the longest text (at most max_words), and the lengths."""
    ids = [tok.encode(t)[:max_words] for t in texts]
    lengths = torch.tensor([max(len(i), 1) for i in ids])
    out = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, i in enumerate(ids):
        out[row, :len(i)] = torch.from_numpy(i)
    return out, lengths


@dataclass
class SentimentTransformerOptions:
    vocab_size: int = 8000
    max_words: int = 64
    width: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.2

    ranges = SentimentOptions.ranges

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_multiple(cfg, "width", "heads", "each head reads width / heads channels")


def recurrent_classifier(cfg: dict, vocab: int) -> torch.nn.Module:
    check_choice(cfg, "cell", ("lstm", "rnn"))
    return rnn.SequenceClassifier(rnn.SequenceClassifierConfig(
        vocab_size=vocab, num_classes=2, embed=cfg["embed"], hidden=cfg["hidden"], layers=cfg["layers"],
        dropout=cfg["dropout"], cell=cfg["cell"]))


def encoder_classifier(cfg: dict, vocab: int) -> torch.nn.Module:
    from pillars.models import transformer
    return transformer.EncoderClassifier(transformer.EncoderClassifierConfig(
        vocab_size=vocab, num_classes=2, width=cfg["width"], heads=cfg["heads"], layers=cfg["layers"],
        max_len=cfg["max_words"] + 1, dropout=cfg["dropout"]))


def sentiment_build(make_model):
    """A `build` for the movie-review snippets; `make_model(cfg, vocab_size)` reads (ids, lengths)."""
    return lambda cfg, device: build_sentiment(cfg, device, make_model)


def padded_loss(model, batch) -> torch.Tensor:
    """Cross-entropy of a classifier of padded sequences: batches (x, lengths, y)."""
    x, lengths, y = batch
    return F.cross_entropy(model(x, lengths), y)


def padded_sums(model, batch) -> dict:
    x, lengths, y = batch
    return metrics.classification_sums(model(x, lengths), y)


def build_sentiment(cfg: dict, device: torch.device, make_model=recurrent_classifier) -> Job:
    from pillars.baselines import majority_accuracy, majority_class, tfidf_logistic_regression, vader_predictions
    from pillars.data import text
    from pillars.data.tokenizers import PAD, UNK, WordTokenizer
    train_texts, train_y = text.movie_reviews("train")
    tok = WordTokenizer.train("\n".join(train_texts), cfg["vocab_size"], specials=(PAD, UNK))
    model = make_model(cfg, len(tok))

    test_texts, test_y = text.movie_reviews("test")

    def baselines():
        majority = majority_class(train_y)
        return {"tfidf_logreg_accuracy": float(np.mean(tfidf_logistic_regression(train_texts, train_y, test_texts)
                                                       == test_y)),
                "vader_accuracy": float(np.mean(vader_predictions(test_texts, majority) == test_y)),
                "majority_accuracy": majority_accuracy(train_y, test_y)}

    def on_device(texts: list[str], labels: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device) for t in (*padded(tok, texts, cfg["max_words"]), torch.from_numpy(labels)))

    # the dataset's own fixed 80/10/10 split, stratified by the sign of the score
    return Job(model=model, train=TensorBatches(on_device(train_texts, train_y), cfg["batch_size"], cfg["seed"]),
               valid=on_device(*text.movie_reviews("valid")), test=on_device(test_texts, test_y), loss=padded_loss,
               eval_sums=padded_sums, summary=metrics.classification_summary, tokenizer=tok, baselines=baselines)


class SentimentClassifier(Family):
    """Sentiment classifiers: accuracy beside TF-IDF + logistic regression, VADER and the majority class."""

    what = "sentiment classifier"
    baseline_names = {"tfidf_logreg_accuracy": ("TF-IDF + logistic regression", "{:.2%}"),
                      "vader_accuracy": ("VADER", "{:.2%}"),
                      "majority_accuracy": ("majority class", "{:.2%}")}
    chance_keys = frozenset({"majority_accuracy"})

    def headline(self, summary: dict) -> str:
        return f"{100 * summary['final']['accuracy']:.2f}% accuracy"

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        return {}   # no explain experiments: the report shows the curves and figures


SENTIMENT = SentimentClassifier()


register(Task(
    name="movie-sentiment-lstm",
    description="positive or negative? An LSTM reads movie-review snippets (VADER's ground truth, neutral "
                "dropped), against TF-IDF + logistic regression and VADER's own lexicon and rules",
    dataset="movie-reviews", model="LSTM classifier (1 x 128)", objective="cross-entropy", metric="accuracy",
    options=SentimentOptions, build=sentiment_build(recurrent_classifier), family=SENTIMENT,
    defaults={"epochs": 6.0, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))

register(Task(
    name="movie-sentiment-transformer",
    description="the movie-review snippets of movie-sentiment-lstm read by a Transformer encoder through a "
                "[CLS] token, on the same split, against the same baselines",
    dataset="movie-reviews", model="Transformer encoder (2 layers, 128 wide), [CLS] pooled",
    objective="cross-entropy", metric="accuracy", options=SentimentTransformerOptions,
    build=sentiment_build(encoder_classifier), family=SENTIMENT,
    defaults={"epochs": 6.0, "batch_size": 64, "lr": 1e-3, "weight_decay": 5e-2, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))
