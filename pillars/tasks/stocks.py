"""Stock forecasting, measured against the forecasts it has to beat.

A common failing of LSTM stock forecasters is a plot in which the forecast hugs the price: it does so
because it repeats yesterday's price, which the random walk does for free. This task forecasts from daily
log returns of the adjusted close, r_t = log(P_t / P_{t-1}), and scores every forecast beside its baselines
on the same test days, with a Diebold-Mariano test of each comparison, so that the verdict says what is and
is not forecastable.

Targets (`--set target=`):
  return      the next day's return. Baselines: the random walk (tomorrow's price is today's: a return of 0)
              and the historical mean (the training days' mean return). Figures: MSE (in %^2), the skill
              1 - MSE / MSE(random walk) (the out-of-sample R^2 of Campbell & Thompson 2008), MASE of the
              implied price forecast P_t exp(r_hat) (Hyndman & Koehler 2006: the mean absolute price error
              over the training days' mean absolute day-to-day change, so the random walk's MASE is the test
              years' volatility relative to the training years'), and the share of days whose direction
              (up or down) it calls right, against 50% (a binomial test) and against always saying "up".
  volatility  the next week's realised variance, RV_t = r_t^2 + ... + r_{t+4}^2 (in %^2; its square root is
              the realised volatility). Baselines: GARCH(1,1) (Bollerslev 1986, from `arch`) fitted on the
              training days only, its parameters then held fixed while it filters the later days, and last
              week's realised variance. Figures: MSE and QLIKE, L = RV/f - log(RV/f) - 1 (Patton 2011: the
              loss that ranks variance forecasts correctly when RV is a noisy proxy), and the skill
              1 - QLIKE / QLIKE(GARCH).
Each model-against-baseline comparison has the p-value of a two-sided Diebold & Mariano (1995) test with the
small-sample correction of Harvey, Leybourne & Newbold (1997), from statsmodels, on the loss its figure
uses: squared error of returns, absolute price error for MASE, 0-1 loss for direction, squared error and
QLIKE for volatility. Weekly targets overlap by four days, so their loss differentials are autocorrelated:
the test's Newey-West variance has h - 1 = 4 lags (0 for the daily return).

The split is chronological, by whole calendar years: the S&P 500 and NASDAQ (1999-2018) train to 2012,
validate on 2013-2015 and test on 2016-2018; the stocks (2000-03 to 2013-03) train to 2008 (through the
2008 crash), validate on 2009-2010 and test on 2011 to March 2013. A user's CSV (`--set data=prices.csv
--set column=Close`, prices in time order, no dates) is split by `valid_fraction` and `test_fraction`. A
forecast belongs to the split its whole target lies in; its window of past returns may reach back into the
split before, as a forecaster's would. The scaling statistics (the mean and spread of returns, MASE's
scale) and the GARCH fit read training days only, and the test years are read once, at the end: the
default history of each target (HISTORY) was chosen on the S&P 500's validation years.

The model: an LSTM reads the past `history` days' standardised returns and their absolute values (the
magnitude carries the volatility clustering) and outputs one number: the standardised return (trained by
MSE), or the log of the weekly variance in units of the training days' (trained by QLIKE's likelihood form
RV/f + log f, whose minimiser is the conditional mean of RV, so the forecast is not biased low the way an
exponentiated log-RV regression is).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pillars.config import ConfigError, Range, write_text_atomic
from pillars.data.batches import TensorBatches
from pillars.data.registry import InputFileError
from pillars.models import rnn
from pillars.tasks import Family, Job, LoadedRun, Task, check_choice, register

TARGETS = ("return", "volatility")
WEEK = 5   # trading days in the volatility target
# the first year of validation and of the test, by series (the test runs to the end of the data)
SPLIT_YEARS = {"sp500": (2013, 2016), "nasdaq": (2013, 2016),
               "AAPL": (2009, 2011), "IBM": (2009, 2011), "MSFT": (2009, 2011), "GOOG": (2009, 2011)}
# days of history by target, chosen on the S&P 500's validation years (2013-2015) among 5, 20 and 60 by the
# skill: 5 for returns (every length was slightly worse than the random walk there), 60 for volatility
HISTORY = {"return": 5, "volatility": 60}
MIN_TRAIN = 250   # training forecasts a run needs at least (a year of days)
SIGNIFICANT = 0.05


@dataclass
class StockOptions:
    series: str = "sp500"        # sp500, nasdaq (1999-2018), AAPL, IBM, MSFT, GOOG (2000-2013)
    data: str = ""               # a CSV of your own prices (in time order) instead
    column: str = ""             # with data=FILE: the price column (name or 0-based position)
    target: str = "return"       # return (the next day's) or volatility (the next week's realised variance)
    history: int = 0             # days of past returns the model reads (0: the target's, HISTORY)
    valid_fraction: float = 0.15   # with data=FILE: the part before the test period held out for validation
    test_fraction: float = 0.15    # with data=FILE: the last part, held out for the test
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"

    ranges = {"history": Range(0, hint="days of past returns the model reads; 0 for the target's default"),
              "valid_fraction": Range(0, 1, "()"), "test_fraction": Range(0, 1, "()")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        from pillars.data.stocks import SERIES
        check_choice(cfg, "target", TARGETS)
        check_choice(cfg, "cell", ("lstm", "rnn"))
        if not cfg["data"]:
            check_choice(cfg, "series", SERIES)
            given = [k for k, default in (("column", ""), ("valid_fraction", 0.15), ("test_fraction", 0.15))
                     if cfg[k] != default]
            if given:
                raise ConfigError(f"{', '.join(given)} apply to your own CSV (--set data=prices.csv); the series "
                                  f"{cfg['series']} is split by whole years: leave them out, or give --set data=FILE")
        elif not cfg["column"]:
            raise ConfigError("give the price column with --set column=NAME (a name from the CSV's first line)")
        if cfg["valid_fraction"] + cfg["test_fraction"] >= 1:
            raise ConfigError(f"valid_fraction {cfg['valid_fraction']} and test_fraction {cfg['test_fraction']} "
                              "leave nothing to train on (together they must be below 1): lower one of them")


# ----------------------------------------------------------------------------- losses and tests

def qlike(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Patton's (2011) QLIKE loss of variance forecasts: RV/f - log(RV/f) - 1, zero for a perfect forecast."""
    ratio = np.asarray(actual, dtype=np.float64) / np.asarray(forecast, dtype=np.float64)
    return ratio - np.log(ratio) - 1


def realised_variance(returns: np.ndarray, days: int = WEEK) -> np.ndarray:
    """The sum of squared returns over each run of `days` consecutive days: element i covers i..i+days-1."""
    squares = np.concatenate([[0.0], np.cumsum(np.asarray(returns, dtype=np.float64) ** 2)])
    return squares[days:] - squares[:-days]


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> float:
    """Two-sided p-value of the Diebold-Mariano test that forecasts a and b have equal expected loss, from
    their losses on the same days, with the Harvey-Leybourne-Newbold correction and h - 1 Newey-West lags
    (statsmodels' test, given the loss differential directly). 1 when the losses are equal every day."""
    from statsmodels.tsa.stattools import diebold_mariano_test
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    if not np.any(d != d[0]):
        return 1.0 if d[0] == 0 else 0.0
    # with forecasts d and 0 of y = 0 under the squared loss the differential is d^2 - 0: pass a loss that
    # returns the differential itself instead
    result = diebold_mariano_test(np.zeros_like(d), d, np.zeros_like(d), lags=horizon - 1, harvey_adj=True,
                                  horizon=horizon, criterion=lambda y, f: f)
    return float(result.pvalue)


# ----------------------------------------------------------------------------- the series and its split

@dataclass
class Series:
    """Prices and returns of one series with its split. Return i is day i+1's, log(P[i+1] / P[i]); the
    forecast of index i is made at the close of day i, having seen returns 0..i-1."""
    name: str
    prices: np.ndarray                 # (n,) adjusted closes, float64
    days: np.ndarray | None            # (n,) datetime64[D], None for a user's CSV
    valid_from: int                    # first return index of validation
    test_from: int                     # first return index of the test

    @property
    def returns(self) -> np.ndarray:
        return np.diff(np.log(self.prices))

    def split_of_return(self, i: int) -> str:
        return "train" if i < self.valid_from else "valid" if i < self.test_from else "test"


def stock_series(cfg: dict) -> Series:
    """The series named by the options, split by years (the datasets) or by fractions (a user's CSV)."""
    if not cfg["data"]:
        from pillars.data.stocks import INDICES, prices
        days, close = prices(cfg["series"])
        valid_year, test_year = SPLIT_YEARS[cfg["series"]]
        years = days.astype("datetime64[Y]").astype(np.int64) + 1970
        # the return of day j is return index j - 1
        first = [int(np.argmax(years >= y)) - 1 for y in (valid_year, test_year)]
        return Series(INDICES.get(cfg["series"], cfg["series"]), close, days, *first)
    from pillars.data.series import load_csv_series
    close = load_csv_series(cfg["data"], cfg["column"]).astype(np.float64)
    what = f"{cfg['data']}: column {cfg['column']!r}"
    if not np.all(close > 0):
        bad = int(np.argmax(~(close > 0)))
        raise InputFileError(f"{what}: value {bad + 1} ({close[bad]:g}) is not a positive price; returns are "
                             "log changes of the price, so every value must be above 0: check --set column")
    m = len(close) - 1
    series = Series(what, close, None, int(m * (1 - cfg["valid_fraction"] - cfg["test_fraction"])),
                    int(m * (1 - cfg["test_fraction"])))
    need = needed_returns(cfg)
    if m < need or count_forecasts(series, cfg)["train"] < MIN_TRAIN:
        raise InputFileError(f"{what} has {len(close)} prices: too few for a history of {history(cfg)} days, "
                             f"{MIN_TRAIN} training forecasts and the validation and test periods (valid_fraction "
                             f"{cfg['valid_fraction']}, test_fraction {cfg['test_fraction']}); give a longer "
                             "series (about 2,000 days or more), or lower --set history=N")
    return series


def history(cfg: dict) -> int:
    return cfg["history"] or HISTORY[cfg["target"]]


def target_days(cfg: dict) -> int:
    return WEEK if cfg["target"] == "volatility" else 1


def needed_returns(cfg: dict) -> int:
    """A lower bound on the returns a split needs: the history, a year of training, a target each."""
    return history(cfg) + MIN_TRAIN + 3 * target_days(cfg)


def forecast_indices(series: Series, cfg: dict) -> dict[str, np.ndarray]:
    """The return index of every forecast by split: a forecast belongs to the split its whole target (one
    day, or a week) lies in; its history of `history` returns may reach into the split before."""
    H, K, m = history(cfg), target_days(cfg), len(series.prices) - 1
    return {"train": np.arange(H, series.valid_from - K + 1),
            "valid": np.arange(max(H, series.valid_from), series.test_from - K + 1),
            "test": np.arange(max(H, series.test_from), m - K + 1)}


def count_forecasts(series: Series, cfg: dict) -> dict[str, int]:
    return {k: len(v) for k, v in forecast_indices(series, cfg).items()}


# ----------------------------------------------------------------------------- baselines

def garch_weekly_variance(returns: np.ndarray, train_end: int) -> np.ndarray:
    """GARCH(1,1) forecasts of the next week's realised variance from every origin: element i forecasts
    returns i..i+4 having seen returns 0..i-1 (NaN for i = 0). Fitted (constant mean, normal errors) on
    returns 0..train_end-1 only; its parameters are then held fixed while it filters the rest."""
    from arch import arch_model
    model = arch_model(returns * 100, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    fit = model.fit(last_obs=train_end, disp="off", show_warning=False)
    ahead = fit.forecast(params=fit.params, horizon=WEEK, start=0, reindex=False).variance.to_numpy()
    out = np.full(len(returns), np.nan)
    out[1:] = ahead.sum(axis=1)[:len(returns) - 1] / 1e4   # forecast from origin i-1: its row i-1
    return out


@dataclass
class Reference:
    """What every figure of a split is computed from, by return index: the actual target and the baselines'
    forecasts (returns in log units, variances in squared log units)."""
    target: str
    prices: np.ndarray
    actual: np.ndarray
    baselines: dict[str, np.ndarray]
    mase_scale: float                # training days' mean absolute price change


def reference(series: Series, cfg: dict) -> Reference:
    r = series.returns
    train = r[:series.valid_from]
    if cfg["target"] == "return":
        actual = r
        baselines = {"random_walk": np.zeros_like(r), "mean": np.full_like(r, train.mean())}
    else:
        rv = realised_variance(r)
        actual = np.concatenate([rv, np.full(WEEK - 1, np.nan)])
        last_week = np.full_like(r, np.nan)
        last_week[WEEK:] = rv[:len(r) - WEEK]
        baselines = {"garch": garch_weekly_variance(r, series.valid_from), "last_week": last_week}
    scale = float(np.mean(np.abs(np.diff(series.prices[:series.valid_from + 1]))))
    return Reference(cfg["target"], series.prices, actual, baselines, scale)


# ----------------------------------------------------------------------------- figures

def figures(ref: Reference, idx: np.ndarray, forecast: np.ndarray | None) -> dict[str, float]:
    """The figures of `forecast` (by return index `idx`; None: the baselines' alone) on the days `idx`, each
    baseline's beside it and the DM p-value of each comparison. Returns and variances are in percent."""
    from scipy.stats import binomtest
    y, out = ref.actual[idx], {}
    named = {**({"model": forecast} if forecast is not None else {}), **{k: v[idx] for k, v in ref.baselines.items()}}
    if ref.target == "return":
        up = y > 0
        moved = y != 0
        p_now, p_next = ref.prices[idx], ref.prices[idx + 1]
        losses = {}
        for name, f in named.items():
            pre = "" if name == "model" else f"{name}_"
            sq, price_err = (1e2 * (f - y)) ** 2, np.abs(p_now * np.exp(f) - p_next)
            losses[name] = (sq, price_err)
            out[f"{pre}mse"] = float(sq.mean())
            out[f"{pre}mase"] = float(price_err.mean() / ref.mase_scale)
        out["always_up_direction"] = float(up[moved].mean())
        if forecast is not None:
            right = ((forecast > 0) == up)[moved]
            out["skill"] = 1 - out["mse"] / out["random_walk_mse"]
            out["direction"] = float(right.mean())
            out["p_direction_half"] = float(binomtest(int(right.sum()), len(right), 0.5).pvalue)
            out["p_direction_always_up"] = diebold_mariano(~right, ~up[moved])
            for name in ref.baselines:
                out[f"p_{name}_mse"] = diebold_mariano(losses["model"][0], losses[name][0])
                out[f"p_{name}_mase"] = diebold_mariano(losses["model"][1], losses[name][1])
    else:
        losses = {}
        for name, f in named.items():
            pre = "" if name == "model" else f"{name}_"
            sq, q = (1e4 * (f - y)) ** 2, qlike(y, f)
            losses[name] = (sq, q)
            out[f"{pre}mse"], out[f"{pre}qlike"] = float(sq.mean()), float(q.mean())
        if forecast is not None:
            out["skill"] = 1 - out["qlike"] / out["garch_qlike"]
            for name in ref.baselines:
                out[f"p_{name}_mse"] = diebold_mariano(losses["model"][0], losses[name][0], WEEK)
                out[f"p_{name}_qlike"] = diebold_mariano(losses["model"][1], losses[name][1], WEEK)
    out["days"] = float(len(idx))
    return out


BASELINE_TEXT = {"random_walk": "the random walk", "mean": "the historical mean", "garch": "GARCH(1,1)",
                 "last_week": "last week's realised variance"}


def comparison(f: dict, name: str, loss: str, fmt: str = "{:.3f}") -> str:
    """"better than / no better than / worse than BASELINE (LOSS model vs baseline, DM p=...)"."""
    mine, theirs, p = f[loss], f[f"{name}_{loss}"], f[f"p_{name}_{loss}"]
    word = ("no better than" if p >= SIGNIFICANT or mine == theirs else
            "better than" if mine < theirs else "worse than")
    return (f"{word} {BASELINE_TEXT[name]} ({loss.upper()} {fmt.format(mine)} vs {fmt.format(theirs)}, "
            f"DM p={p:.2g})")


def verdict(f: dict, target: str) -> str:
    """The one line the figures support: against the reference baseline, with the test's p-value."""
    if target == "return":
        direction = (f"direction right on {f['direction']:.1%} of days (against 50%: p={f['p_direction_half']:.2g}; "
                     f"always \"up\": {f['always_up_direction']:.1%})")
        return f"price forecast {comparison(f, 'random_walk', 'mase')}; {direction}"
    return (f"weekly variance forecast {comparison(f, 'garch', 'qlike')}, and "
            f"{comparison(f, 'last_week', 'qlike')}")


# ----------------------------------------------------------------------------- the job

@dataclass
class StockJob(Job):
    series: Series | None = None
    ref: Reference | None = None
    split: dict = field(default_factory=dict)   # split -> return indices of its forecasts
    mean: float = 0.0            # training returns' mean and standard deviation (the inputs' scaling)
    std: float = 1.0

    def forecasts(self, out: torch.Tensor) -> torch.Tensor:
        """The model's output -> forecasts: a log return, or a weekly variance in squared log units."""
        if self.ref.target == "return":
            return self.mean + self.std * out
        return WEEK * self.std ** 2 * torch.exp(out)


def build_stocks(cfg: dict, device: torch.device) -> StockJob:
    series = stock_series(cfg)
    r = series.returns
    split = forecast_indices(series, cfg)
    counts = {k: len(v) for k, v in split.items()}
    if min(counts.values()) < 1 or counts["train"] < MIN_TRAIN:
        raise ConfigError(f"{series.name}: a history of {history(cfg)} days leaves {counts['train']} training, "
                          f"{counts['valid']} validation and {counts['test']} test forecasts (training needs at "
                          f"least {MIN_TRAIN}); lower --set history=N")
    train = r[:series.valid_from]   # scaling statistics: training days only
    mean, std = float(train.mean()), float(train.std())
    if std == 0:
        raise InputFileError(f"{series.name}: the price does not move on the training days, so there is nothing "
                             "to learn from; check --set column")
    ref = reference(series, cfg)
    if cfg["target"] == "volatility":
        held = np.concatenate([split["valid"], split["test"]])
        if np.any(ref.actual[held] == 0):
            raise InputFileError(f"{series.name}: the price stays the same for a whole week in the validation or "
                                 "test period, where QLIKE is undefined; forecast target=return instead")
    z = (r - mean) / std
    inputs = np.stack([z, np.abs(z)], axis=-1).astype(np.float32)
    if cfg["target"] == "return":
        y = z
    else:   # the weekly variance in units of the training days' (log-spaced after the model's exp)
        y = np.nan_to_num(ref.actual / (WEEK * std ** 2))
    H = history(cfg)

    def tensors(name: str) -> tuple[torch.Tensor, ...]:
        idx = split[name]
        x = inputs[idx[:, None] - H + np.arange(H)]
        return tuple(torch.from_numpy(a).to(device) for a in (x, y[idx].astype(np.float32), idx.astype(np.int64)))

    model = rnn.Forecaster(rnn.ForecasterConfig(features=2, horizon=1, hidden=cfg["hidden"], layers=cfg["layers"],
                                                dropout=cfg["dropout"], cell=cfg["cell"], residual=False))

    def loss(model, batch):
        x, target, _ = batch
        out = model(x).float()[:, 0]
        if cfg["target"] == "return":
            return F.mse_loss(out, target)
        return (target * torch.exp(-out) + out).mean()   # QLIKE up to terms free of the forecast

    size = len(r)

    def eval_sums(model, batch):
        x, _, idx = batch
        f = job.forecasts(model(x).float()[:, 0])
        return {"forecast": torch.zeros(size, device=x.device).index_add_(0, idx, f),
                "seen": torch.zeros(size, device=x.device).index_add_(0, idx, torch.ones_like(f))}

    def summary(sums):
        idx = np.flatnonzero(sums["seen"] > 0)
        return figures(ref, idx, sums["forecast"][idx] / sums["seen"][idx])

    def baselines():
        return figures(ref, split["test"], None)

    job = StockJob(model=model, train=TensorBatches(tensors("train"), cfg["batch_size"], cfg["seed"]),
                   valid=tensors("valid"), test=tensors("test"), loss=loss, eval_sums=eval_sums, summary=summary,
                   baselines=baselines, series=series, ref=ref, split=split, mean=mean, std=std)
    return job


# ----------------------------------------------------------------------------- the figure

def plot_stock_forecasts(job: StockJob, idx: np.ndarray, forecast: np.ndarray, f: dict, line: str, path) -> None:
    """The test period of a stock forecaster: the forecast against what happened and the baselines'
    forecasts, day by day (left); the cumulative loss of each forecast less the reference baseline's, which
    rises where it does worse (middle); the test figures side by side with their Diebold-Mariano p-values
    (right). The verdict is the title."""
    from pillars.plots import pyplot
    ref, plt = job.ref, pyplot()
    when = job.series.days[idx + 1] if job.series.days is not None else idx + 1
    actual = ref.actual[idx]
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [2.2, 1.4, 1]})
    colours = {"model": "tab:red", "random_walk": "black", "mean": "tab:green", "garch": "tab:blue",
               "last_week": "tab:orange"}
    if ref.target == "return":
        scale, unit, base_name, metric = 100, "daily return (%)", "random_walk", "mase"
        loss_name = "absolute price error"
        p_now, p_next = ref.prices[idx], ref.prices[idx + 1]

        def loss(g):   # absolute price error: MASE's loss
            return np.abs(p_now * np.exp(g) - p_next)
    else:
        scale, unit, base_name, metric = 1e4, "next week's realised variance (%^2)", "garch", "qlike"
        loss_name = "QLIKE"

        def loss(g):
            return qlike(actual, g)
        ax.set_yscale("log")
    ax.plot(when, scale * actual, color="grey", lw=0.6, label="what happened")
    for name, g in ref.baselines.items():
        if name != "random_walk":   # the random walk's return forecast is the zero line
            ax.plot(when, scale * g[idx], color=colours[name], lw=0.8, label=BASELINE_TEXT[name])
    ax.plot(when, scale * forecast, color=colours["model"], lw=1.0, label="LSTM")
    ax.set_ylabel(unit)
    ax.set_title(f"{job.series.name}: the test period", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    base = loss(ref.baselines[base_name][idx])
    for name, g in [("model", forecast)] + [(k, v[idx]) for k, v in ref.baselines.items() if k != base_name]:
        bx.plot(when, np.cumsum(loss(g) - base), color=colours[name], lw=1,
                label="LSTM" if name == "model" else BASELINE_TEXT[name])
    bx.axhline(0, color="black", lw=0.6)
    bx.set_title(f"cumulative {loss_name} less {BASELINE_TEXT[base_name]}'s (up: worse)", fontsize=9)
    bx.legend(fontsize=7)
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.tick_params(axis="x", labelrotation=30, labelsize=7)
    names = ["model", *ref.baselines]
    values = [f[metric if n == "model" else f"{n}_{metric}"] for n in names]
    cx.bar(range(len(names)), values, color=[colours[n] for n in names])
    cx.set_xticks(range(len(names)), ["LSTM" if n == "model" else BASELINE_TEXT[n] for n in names], fontsize=7,
                  rotation=15)
    for i, n in enumerate(names[1:], start=1):
        cx.text(i, values[i], f"DM p={f[f'p_{n}_{metric}']:.2g}", ha="center", va="bottom", fontsize=7)
    cx.set_ylim(min(values) * 0.95, max(values) * 1.05)
    cx.set_title(f"test {metric.upper()} ({int(f['days'])} days)", fontsize=9)
    cx.grid(alpha=0.3, axis="y")
    fig.suptitle(line, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the family

class StockForecaster(Family):
    """Stock forecasters: the verdict against the random walk or GARCH(1,1) with its DM p-value, and
    stock_forecasts.png."""

    what = "stock forecaster"
    baseline_names = {"random_walk_mase": ("random walk", "price MASE {:.3f}"),
                      "mean_mse": ("historical mean", "MSE {:.4f} %^2"),
                      "always_up_direction": ("always \"up\"", "{:.1%} direction"),
                      "garch_qlike": ("GARCH(1,1)", "QLIKE {:.3f}"),
                      "last_week_qlike": ("last week's variance", "QLIKE {:.3f}")}
    chance_keys = frozenset({"always_up_direction"})
    report_figures = ("curves.png", "stock_forecasts.png")

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        return verdict(f, "return" if "mase" in f else "volatility")

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        job = run.job
        model = job.model.float().eval()
        with torch.no_grad():
            forecast = job.forecasts(model(job.test[0])[:, 0]).cpu().numpy().astype(np.float64)
        idx = job.split["test"]
        f = figures(job.ref, idx, forecast)
        line = verdict(f, job.ref.target)
        path = run.run_dir / "stock_forecasts.png"
        plot_stock_forecasts(job, idx, forecast, f, line, path)
        log(f"wrote {path}")
        log(f"{job.series.name}, test: {line}")
        out = {"stock_forecasts": path.name, "verdict": line, "test": f}
        write_text_atomic(run.run_dir / "explain.json", json.dumps(out, indent=2) + "\n")
        return out


register(Task(
    name="stock-forecast",
    description="forecast the next day's return or the next week's realised volatility of the S&P 500, the "
                "NASDAQ or a stock from its past returns (train, validation and test years in time order), "
                "against the random walk, the historical mean and GARCH(1,1), with Diebold-Mariano tests",
    dataset="stock-indices, stocks", model="LSTM (1 x 32) over the past 5 (return) or 60 (volatility) days' returns",
    objective="MSE (return) or QLIKE (volatility)", metric="skill", options=StockOptions, build=build_stocks,
    family=StockForecaster(),
    defaults={"epochs": 10.0, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 1024, "log_every": 50},
))
