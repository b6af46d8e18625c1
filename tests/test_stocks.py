"""Stock forecasting: the Diebold-Mariano test and QLIKE, the chronological split, a short real-data run
and a user's CSV of prices."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from pillars import tasks
from pillars.tasks.stocks import diebold_mariano, qlike, realised_variance
from pillars.train import resolve_config
from tests.conftest import pillars, sets


def make_job(**overrides):
    cfg = resolve_config("stock-forecast", overrides={k: str(v) for k, v in overrides.items()})
    return tasks.get("stock-forecast").make_job(cfg, torch.device("cpu"))


def test_diebold_mariano_against_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1, 300) ** 2, rng.normal(1.1, 1, 300) ** 2
    d, T = a - b, 300
    # one-step forecasts: no lags; the variance of the mean is var(d) / T (the sum of squares over T, as
    # Newey-West's), then Harvey-Leybourne-Newbold's factor and Student's t with T - 1 degrees of freedom
    dm = d.mean() / np.sqrt(((d - d.mean()) ** 2).sum() / T / T)
    hln = dm * np.sqrt((T + 1 - 2) / T)
    assert diebold_mariano(a, b) == pytest.approx(2 * student_t.sf(abs(hln), T - 1), rel=1e-6)
    # h = 5: Newey-West with Bartlett weights 1 - j/5 on lags 1..4
    h = 5
    c = d - d.mean()
    gamma = [c[j:] @ c[:T - j] / T for j in range(h)]
    long_run = gamma[0] + 2 * sum((1 - j / h) * gamma[j] for j in range(1, h))
    dm = d.mean() / np.sqrt(long_run / T)
    hln = dm * np.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
    assert diebold_mariano(a, b, horizon=h) == pytest.approx(2 * student_t.sf(abs(hln), T - 1), rel=1e-6)
    # the known cases: the same losses, and one forecast always far worse
    assert diebold_mariano(a, a) == 1.0
    assert diebold_mariano(a + 1 + rng.random(300), a) < 1e-10


def test_qlike_and_realised_variance():
    assert qlike(np.array([2.0]), np.array([2.0]))[0] == 0
    assert qlike(np.array([1.0]), np.array([2.0]))[0] == pytest.approx(0.5 - np.log(0.5) - 1)
    # QLIKE punishes forecasting too little variance more than too much (Patton 2011)
    assert qlike(np.array([1.0]), np.array([0.5]))[0] > qlike(np.array([1.0]), np.array([1.5]))[0]
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.01, -0.01])
    np.testing.assert_allclose(realised_variance(r, 5), [(r[:5] ** 2).sum(), (r[1:] ** 2).sum()])


@pytest.mark.parametrize("target", ["return", "volatility"])
def test_no_test_day_reaches_training_or_scaling(tmp_path, target):
    """Prices of the test years replaced by other prices change nothing of training: its inputs, targets,
    the scaling statistics, MASE's scale and the GARCH forecasts before the test."""
    from pillars.data.stocks import prices
    days, close = prices("sp500")
    changed = close.copy()
    test_from = int(np.argmax(days >= np.datetime64("2016-01-01")))
    changed[test_from:] *= np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.03, len(close) - test_from)))
    jobs = []
    for i, c in enumerate((close, changed)):
        csv = tmp_path / f"prices{i}.csv"
        csv.write_text("Close\n" + "".join(f"{float(v)!r}\n" for v in c))
        # the CSV path splits by fractions: make its test period start where the S&P 500's test years do
        m = len(c) - 1
        test_fraction = (m - (test_from - 1) - 0.5) / m
        jobs.append(make_job(data=csv, column="Close", target=target, valid_fraction=0.1,
                             test_fraction=test_fraction))
    a, b = jobs
    assert a.series.test_from == test_from - 1   # the first test-year return
    assert a.split["train"].max() + (5 if target == "volatility" else 1) <= a.series.valid_from
    assert a.split["valid"].max() + (5 if target == "volatility" else 1) <= a.series.test_from
    assert a.split["test"].min() >= a.series.test_from
    assert all(torch.equal(x, y) for x, y in zip(a.train.tensors, b.train.tensors))
    assert all(torch.equal(x, y) for x, y in zip(a.valid, b.valid))
    assert (a.mean, a.std, a.ref.mase_scale) == (b.mean, b.std, b.ref.mase_scale)
    for name in a.ref.baselines:   # a baseline's forecast made before the test reads no test day
        np.testing.assert_array_equal(a.ref.baselines[name][:a.series.test_from + 1],
                                      b.ref.baselines[name][:a.series.test_from + 1])
    assert not torch.equal(a.test[0], b.test[0])   # the change did reach the test


def test_the_years_split_the_series():
    job = make_job(series="AAPL", target="volatility")
    days, split = job.series.days, job.split
    year = lambda i: int(str(days[i + 1])[:4])   # noqa: E731   (the day of return i is day i + 1)
    assert year(split["train"][-1] + 4) == 2008 and year(split["valid"][0]) == 2009
    assert year(split["valid"][-1] + 4) == 2010 and year(split["test"][0]) == 2011


def test_a_short_run_on_the_sp500_and_its_verdict(tmp_path):
    run = tmp_path / "sp500"
    pillars("train", "stock-forecast", "--max-steps", "100", "--out", str(run), "--no-progress",
            *sets("eval_every=100"))
    summary = json.loads((run / "summary.json").read_text())
    final, base = summary["final"], summary["baselines"]
    assert all(np.isfinite(v) for v in final.values()), final
    assert final["days"] == base["days"] == 754   # 2016-2018
    # the random walk's MASE is the test years' price volatility over the training years': about 1.2 here
    assert 1.1 < base["random_walk_mase"] < 1.4 and abs(final["mase"] / base["random_walk_mase"] - 1) < 0.02
    assert 0.45 < final["direction"] < 0.58 and 0 < final["p_random_walk_mase"] <= 1
    pillars("explain", str(run))
    explained = json.loads((run / "explain.json").read_text())
    assert explained["verdict"].startswith("price forecast ") and "DM p=" in explained["verdict"]
    assert (run / "stock_forecasts.png").stat().st_size > 20_000


def test_a_users_csv_of_prices_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500)))
    csv = tmp_path / "prices.csv"
    csv.write_text("Date,Close\n" + "".join(f"d{i},{v:.4f}\n" for i, v in enumerate(close)))
    run = tmp_path / "mine"
    pillars("train", "stock-forecast", "--max-steps", "30", "--out", str(run), "--no-progress",
            *sets(f"data={csv}", "column=Close", "target=volatility", "eval_every=30"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["days"] == summary["baselines"]["days"] > 200
    for bad, words in (((f"data={csv}",), "give the price column with --set column=NAME"),
                       ((f"data={csv}", "column=close"), "'Close' differs only in case"),
                       ((f"data={csv}", "column=Date"), "is not a number"),
                       (("series=TSLA",), "series must be one of sp500, nasdaq, AAPL"),
                       (("target=price",), "target must be one of return, volatility"),
                       (("valid_fraction=0.3",), "valid_fraction apply to your own CSV")):
        r = pillars("train", "stock-forecast", "--max-steps", "1", "--out", str(tmp_path / "bad"), *sets(*bad),
                    check=False)
        assert r.returncode != 0 and words in r.stderr, (bad, r.stderr[-500:])
    short, negative = tmp_path / "short.csv", tmp_path / "negative.csv"
    short.write_text("Close\n" + "".join(f"{v:.4f}\n" for v in close[:300]))
    negative.write_text("Close\n" + "".join(f"{v:.4f}\n" for v in np.r_[close[:10], -1.0, close[10:]]))
    for path, words in ((short, "has 300 prices: too few"), (negative, "value 11 (-1) is not a positive price")):
        r = pillars("train", "stock-forecast", "--max-steps", "1", "--out", str(tmp_path / "bad"),
                    *sets(f"data={path}", "column=Close"), check=False)
        assert r.returncode != 0 and words in r.stderr, (path, r.stderr[-500:])
