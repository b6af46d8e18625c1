"""Sequence problems for recurrent networks: long time lags, forecasting, sentiment."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pillars import metrics
from pillars.data.batches import TensorBatches
from pillars.models import rnn
from pillars.tasks import Job, Task, check_choice, register


@dataclass
class AddingOptions:
    lag: int = 100               # sequence length T: one marked value in each half, so the first lies T/2 to T back
    cell: str = "lstm"           # lstm, or rnn (tanh): the network the LSTM was invented to replace
    hidden: int = 64
    layers: int = 1
    fused: bool = True
    forget_bias: float = 1.0     # LSTM: initial forget-gate bias (Gers et al. 2000 use 1; larger remembers longer)
    test_sequences: int = 2000


def build_adding(cfg: dict, device: torch.device) -> Job:
    from pillars.config import ConfigError
    from pillars.data.synthetic import AddingBatches, adding_problem
    check_choice(cfg, "cell", ("lstm", "rnn"))
    if cfg["lag"] < 4:
        raise ConfigError(f"lag must be at least 4 steps, not {cfg['lag']}")
    test = adding_problem(cfg["test_sequences"], cfg["lag"], torch.Generator().manual_seed(2 ** 40 + cfg["seed"]))
    model = rnn.Forecaster(rnn.ForecasterConfig(features=2, horizon=1, hidden=cfg["hidden"], layers=cfg["layers"],
                                                cell=cfg["cell"], fused=cfg["fused"], residual=False,
                                                forget_bias=cfg["forget_bias"]))

    def loss(model, batch):
        x, y = batch
        return F.mse_loss(model(x).float(), y)

    def eval_sums(model, batch):
        return metrics.regression_sums(model(batch[0]), batch[1], tolerance=0.04)

    return Job(model=model, train=AddingBatches(cfg["lag"], cfg["batch_size"], cfg["seed"], device),
               test=tuple(t.to(device) for t in test), loss=loss, eval_sums=eval_sums,
               summary=metrics.regression_summary)


register(Task(
    name="adding-problem",
    description="Hochreiter & Schmidhuber's adding problem: sum two marked values, one in each half of a "
                "sequence of `lag` steps",
    dataset="synthetic (fresh sequences every step)", model="LSTM (1 x 64) or tanh RNN, linear read-out",
    objective="mean squared error", metric="success", options=AddingOptions, build=build_adding,
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
    test_fraction: float = 0.2   # the last part of the series is the held-out period
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.0
    cell: str = "lstm"


def forecast_series(cfg: dict) -> tuple[np.ndarray, int]:
    """(series, seasonal period) from the weather data or the user's CSV."""
    from pillars.config import ConfigError
    from pillars.data import series
    if cfg["data"]:
        if not cfg["column"]:
            raise ConfigError("give the column to forecast with --set column=NAME (a name from the CSV's first line)")
        values = series.load_csv_series(cfg["data"], int(cfg["column"]) if cfg["column"].isdigit() else cfg["column"])
        season = cfg["season"] or series.infer_season(values[:int(len(values) * (1 - cfg["test_fraction"]))])
        if not season:
            raise ConfigError(f"no seasonal period shows in {cfg['data']}: give one with --set season=N (1 for none)")
        return values, int(season)
    return series.weather(cfg["station"], cfg["variable"]), cfg["season"] or 24


def forecast_series_name(cfg: dict) -> str:
    return f"{cfg['data']}: {cfg['column']}" if cfg["data"] else f"{cfg['variable']} at {cfg['station']}"


def windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return values[starts[:, None] + np.arange(length)]


def build_forecast(cfg: dict, device: torch.device) -> Job:
    from pillars.config import ConfigError
    from pillars.baselines import naive_forecast, seasonal_naive_forecast
    if not 0 < cfg["test_fraction"] < 1:
        raise ConfigError(f"test_fraction must be between 0 and 1, not {cfg['test_fraction']}")
    check_choice(cfg, "cell", ("lstm", "rnn"))
    values, season = forecast_series(cfg)
    H, F_ = cfg["history"], cfg["horizon"]
    cut = int(len(values) * (1 - cfg["test_fraction"]))
    if H < 1 or F_ < 1 or cut - H - F_ < 100 or len(values) - cut < F_:
        raise ConfigError(f"the series has {len(values)} values: too few for a history of {H} and a horizon of "
                          f"{F_} with test_fraction {cfg['test_fraction']}; lower --set history=N or horizon=N")
    if not 1 <= season <= H:
        raise ConfigError(f"season {season} must be between 1 and the history ({H}): the seasonal-naive forecast "
                          "copies the last season of the history; set --set season=N or a longer --set history=N")
    train_vals = values[:cut]
    mean, std = float(train_vals.mean()), float(train_vals.std() or 1.0)
    # MASE scale: the in-sample mean absolute error of the seasonal-naive forecast (the seasonal form of
    # Hyndman & Koehler 2006, as in the M4 competition)
    scale = float(np.mean(np.abs(train_vals[season:] - train_vals[:-season])))
    if scale == 0:
        raise ConfigError(f"the training part of the series repeats exactly every {season} steps, so MASE is "
                          "undefined; check the column, or the season")
    phase = 2 * np.pi * np.arange(len(values)) / max(season, 1)
    inputs = np.stack([(values - mean) / std, np.sin(phase), np.cos(phase)], axis=-1).astype(np.float32)
    if season <= 1:
        inputs = inputs[:, :1]
    target = ((values - mean) / std).astype(np.float32)
    train_starts = np.arange(0, cut - H - F_ + 1)
    test_starts = np.arange(max(0, cut - H), len(values) - H - F_ + 1)   # forecasts of the held-out period

    def tensors(starts):
        x = torch.from_numpy(windows(inputs, starts, H))
        y = torch.from_numpy(windows(target, starts + H, F_))
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
        history = windows(values, test_starts, H)
        actual = windows(values, test_starts + H, F_)
        out = {}
        for name, pred in (("naive", naive_forecast(history, F_)),
                           ("seasonal_naive", seasonal_naive_forecast(history, F_, season))):
            err = pred - actual
            out[f"{name}_mae"] = float(np.abs(err).mean())
            out[f"{name}_rmse"] = float(np.sqrt((err ** 2).mean()))
            out[f"{name}_mase"] = float(np.abs(err).mean() / scale)
        return out

    return Job(model=model, train=TensorBatches(tensors(train_starts), cfg["batch_size"], cfg["seed"]),
               test=tensors(test_starts), loss=loss, eval_sums=eval_sums, summary=summary, baselines=baselines,
               info={"mean": mean, "std": std, "season": season, "series": forecast_series_name(cfg)})


register(Task(
    name="weather-lstm",
    description="forecast the next 24 hours of temperature from the past week (pvlib's TMY3 hourly weather; "
                "the last 20% of the year held out), against naive and seasonal-naive forecasts",
    dataset="weather", model="LSTM forecaster (2 x 64), direct 24-step output", objective="mean squared error",
    metric="mase", options=ForecastOptions, higher_is_better=False, build=build_forecast,
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


def build_sentiment(cfg: dict, device: torch.device, make_model=recurrent_classifier) -> Job:
    from pillars.baselines import tfidf_logistic_regression, vader_predictions
    from pillars.data import text
    from pillars.data.tokenizers import PAD, UNK, WordTokenizer
    train_texts, train_y = text.movie_reviews("train")
    test_texts, test_y = text.movie_reviews("test")
    tok = WordTokenizer.train("\n".join(train_texts), cfg["vocab_size"], specials=(PAD, UNK))
    train_x, train_len = padded(tok, train_texts, cfg["max_words"])
    test_x, test_len = padded(tok, test_texts, cfg["max_words"])
    model = make_model(cfg, len(tok))

    def loss(model, batch):
        x, lengths, y = batch
        return F.cross_entropy(model(x, lengths), y)

    def eval_sums(model, batch):
        x, lengths, y = batch
        return metrics.classification_sums(model(x, lengths), y)

    def baselines():
        majority = int(np.bincount(train_y).argmax())
        return {"tfidf_logreg_accuracy": float(np.mean(tfidf_logistic_regression(train_texts, train_y, test_texts)
                                                       == test_y)),
                "vader_accuracy": float(np.mean(vader_predictions(test_texts, majority) == test_y)),
                "majority_accuracy": float(np.mean(test_y == majority))}

    def on_device(*ts):
        return tuple(t.to(device) for t in ts)

    train = on_device(train_x, train_len, torch.from_numpy(train_y))
    return Job(model=model, train=TensorBatches(train, cfg["batch_size"], cfg["seed"]),
               test=on_device(test_x, test_len, torch.from_numpy(test_y)), loss=loss, eval_sums=eval_sums,
               summary=metrics.classification_summary, tokenizer=tok, baselines=baselines)


register(Task(
    name="movie-sentiment-lstm",
    description="positive or negative? An LSTM reads movie-review snippets (VADER's ground truth, neutral "
                "dropped), against TF-IDF + logistic regression and VADER's own lexicon and rules",
    dataset="movie-reviews", model="LSTM classifier (1 x 128)", objective="cross-entropy", metric="accuracy",
    options=SentimentOptions, build=sentiment_build(recurrent_classifier),
    defaults={"epochs": 6.0, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))

register(Task(
    name="movie-sentiment-transformer",
    description="the movie-review snippets of movie-sentiment-lstm read by a Transformer encoder through a "
                "[CLS] token, on the same split, against the same baselines",
    dataset="movie-reviews", model="Transformer encoder (2 layers, 128 wide), [CLS] pooled",
    objective="cross-entropy", metric="accuracy", options=SentimentTransformerOptions,
    build=sentiment_build(encoder_classifier),
    defaults={"epochs": 6.0, "batch_size": 64, "lr": 1e-3, "weight_decay": 5e-2, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))
