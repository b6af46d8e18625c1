"""Recurrent networks on sequence problems: the adding problem, forecasting and sentiment, on real data."""
import json

import numpy as np
import pytest
import torch

from pillars import tasks
from pillars.data.synthetic import adding_problem
from pillars.experiments import chance_success
from pillars.tasks.sequences import forecast_periods
from pillars.train import resolve_config
from tests.conftest import pillars, sets


def make_job(task: str, **overrides):
    return tasks.get(task).make_job(resolve_config(task, overrides=overrides), torch.device("cpu"))


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_adding_problem_marks_two_values_early_and_sums_them():
    x, y = adding_problem(500, 100, torch.Generator().manual_seed(0))
    assert x.shape == (500, 100, 2) and y.shape == (500, 1)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    where = torch.nonzero(markers)[:, 1].view(500, 2)
    assert torch.all(where[:, 0] < 50) and torch.all(where[:, 1] >= 50)   # one marked value in each half
    torch.testing.assert_close((x[..., 0] * markers).sum(1, keepdim=True), y)
    # always answering 1 solves about 7.8% of the sequences (1.2 points is 3 standard errors at n=5000)
    _, many = adding_problem(5000, 100, torch.Generator().manual_seed(1))
    assert abs(((many - 1).abs() < 0.04).float().mean().item() - chance_success()) < 0.012


def test_lstm_learns_the_adding_problem_at_a_short_lag(tmp_path):
    run = tmp_path / "add"
    pillars("train", "adding-problem", "--max-steps", "1500", "--out", str(run), "--no-progress",
            *sets("lag=20", "hidden=32", "eval_every=1500", "test_sequences=1000", "lr=0.01"))
    final = json.loads((run / "summary.json").read_text())["final"]
    assert final["mse"] < 0.005 and final["success"] > 0.8, final   # answering 1 gives mse 0.167, 7.8%


def test_weather_lstm_beats_seasonal_naive_on_the_held_out_months(tmp_path):
    run = tmp_path / "weather"
    pillars("train", "weather-lstm", "--max-steps", "150", "--out", str(run), "--no-progress",
            *sets("eval_every=150"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["mase"] < summary["baselines"]["seasonal_naive_mase"], summary
    assert summary["baselines"]["seasonal_naive_mase"] < summary["baselines"]["naive_mase"]
    pillars("explain", str(run))
    assert (run / "forecasts.png").stat().st_size > 10_000


def test_forecaster_on_a_users_csv_infers_the_season(tmp_path):
    t = np.arange(2000)
    values = 10 + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.5, len(t))
    csv = tmp_path / "sales.csv"
    csv.write_text("month,sales\n" + "".join(f"{i},{v:.3f}\n" for i, v in enumerate(values)))
    run = tmp_path / "run"
    pillars("train", "weather-lstm", "--max-steps", "60", "--out", str(run), "--no-progress",
            *sets(f"data={csv}", "column=sales", "history=48", "horizon=12", "eval_every=60"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["mase"] < 1.5 and "seasonal_naive_mase" in summary["baselines"]
    wrong = pillars("train", "weather-lstm", "--max-steps", "1", *sets(f"data={csv}", "column=price"),
                    check=False)
    assert wrong.returncode == 2 and "month, sales" in wrong.stderr
    missing = pillars("train", "weather-lstm", "--max-steps", "1", *sets(f"data={csv}"), check=False)
    assert missing.returncode == 2 and "column=NAME" in missing.stderr


def test_sentiment_lstm_trains_and_reports_both_baselines(tmp_path):
    run = tmp_path / "sentiment"
    pillars("train", "movie-sentiment-lstm", "--epochs", "2", "--out", str(run), "--no-progress")
    summary = json.loads((run / "summary.json").read_text())
    b = summary["baselines"]
    assert 0.70 < b["tfidf_logreg_accuracy"] < 0.85 and 0.55 < b["vader_accuracy"] < 0.8, b
    assert summary["final"]["accuracy"] > 0.6, summary["final"]
    assert json.loads((run / "tokenizer.json").read_text())["vocab"][0] == "<pad>"


def test_sentiment_transformer_learns_on_the_same_split(tmp_path):
    run = tmp_path / "sentiment"
    pillars("train", "movie-sentiment-transformer", "--epochs", "1", "--out", str(run), "--no-progress")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["accuracy"] > 0.68, summary["final"]     # 74.3% after 1 epoch when measured
    assert "tfidf_logreg_accuracy" in summary["baselines"]


@pytest.mark.parametrize("task", ["sotu-lstm", "sotu-char-lstm", "weather-lstm", "movie-sentiment-lstm",
                                  "adding-problem", "movie-sentiment-transformer"])
def test_every_recurrent_task_runs_one_step(task):
    r = pillars("train", task, "--dry-run")
    assert "dry run ok" in r.stderr


def test_impossible_options_are_clear_errors(tmp_path):
    for task, bad, words in (("weather-lstm", "cell=gru", "cell must be one of lstm, rnn"),
                             ("weather-lstm", "season=500", "season 500 must be between 1 and the history"),
                             ("weather-lstm", "test_fraction=1.5", "test_fraction must be between 0 and 1"),
                             ("weather-lstm", "valid_fraction=0", "valid_fraction must be between 0 and 1"),
                             ("adding-problem", "lag=2", "lag must be at least 4"),
                             ("sotu-char-lstm", "ngram_order=12", "ngram_order=12")):
        r = pillars("train", task, "--max-steps", "1", *sets(bad), check=False)
        assert r.returncode == 2 and words in r.stderr, (bad, r.stderr[-500:])
    flat = tmp_path / "flat.csv"
    flat.write_text("x\n" + "3.0\n" * 600)
    r = pillars("train", "weather-lstm", "--max-steps", "1", *sets(f"data={flat}", "column=x", "season=24"),
                check=False)
    assert r.returncode == 2 and "MASE is undefined" in r.stderr


def test_adding_problem_validates_on_its_own_fixed_sequences():
    jobs = [make_job("adding-problem", lag=20, test_sequences=300, seed=seed) for seed in (0, 1)]
    assert same(jobs[0].valid, jobs[1].valid)                  # one validation set for every run
    assert not torch.equal(jobs[0].test[0], jobs[1].test[0])   # the test's generator is the run's, as it was
    test = adding_problem(300, 20, torch.Generator().manual_seed(2 ** 40))
    assert same(jobs[0].test, test)                            # the test set of every earlier run of seed 0
    train = torch.cat([jobs[0].train.batch(step)[0] for step in range(20)])
    valid_values = {tuple(row) for row in jobs[0].valid[0][..., 0].tolist()}
    assert not valid_values & {tuple(row) for row in jobs[0].test[0][..., 0].tolist()}
    assert not valid_values & {tuple(row) for row in train[..., 0].tolist()}


def test_forecast_periods_are_train_then_valid_then_test():
    n, cfg = 8760, {"history": 168, "horizon": 24, "test_fraction": 0.2, "valid_fraction": 0.1}
    valid_from, test_from, starts = forecast_periods(n, cfg)
    assert (valid_from, test_from) == (int(n * 0.7), int(n * 0.8))
    last_target = {k: v.max() + 168 + 24 - 1 for k, v in starts.items()}
    first_target = {k: v.min() + 168 for k, v in starts.items()}
    assert last_target["train"] == valid_from - 1 and first_target["valid"] == valid_from
    assert last_target["valid"] == test_from - 1 and first_target["test"] == test_from
    assert last_target["test"] == n - 1
    # the test windows every earlier run was measured on
    assert np.array_equal(starts["test"], np.arange(test_from - 168, n - 168 - 24 + 1))
    a, b = make_job("weather-lstm", seed=0), make_job("weather-lstm", seed=1)
    assert same(a.valid, b.valid) and len(a.valid[0]) == len(starts["valid"])
    assert (a.season, a.series) == (24, "temperature at greensboro") and a.std > 1


def test_sentiment_validates_on_the_datasets_valid_split():
    from pillars.data.text import movie_reviews
    a, b = make_job("movie-sentiment-lstm", seed=0), make_job("movie-sentiment-lstm", seed=1)
    assert same(a.valid, b.valid)
    texts = {s: set(movie_reviews(s)[0]) for s in ("train", "valid", "test")}
    assert len(a.valid[0]) == len(movie_reviews("valid")[0]) == 1057
    assert not texts["valid"] & texts["test"] and len(texts["valid"] & texts["train"]) == 1   # a snippet seen twice
    assert torch.equal(a.valid[2], torch.from_numpy(movie_reviews("valid")[1]))


def test_families_write_headlines_and_baselines():
    adding, weather, sentiment = (tasks.get(t).family for t in ("adding-problem", "weather-lstm",
                                                                  "movie-sentiment-lstm"))
    s = {"final": {"success": 0.9125, "mse": 0.00123}, "baselines": {"always_one_success": 0.078}}
    assert adding.headline(s) == "91.2% of sequences solved (|error| < 0.04), MSE 0.0012"
    assert adding.chance(s) == "always answering 1 7.8% solved" and adding.baselines_text(s, "baselines") == ""
    s = {"final": {"mase": 1.0071, "mae": 3.061},
         "baselines": {"seasonal_naive_mase": 1.3088, "naive_mase": 1.548, "naive_mae": 4.7}}
    assert weather.headline(s) == "MASE 1.007 (MAE 3.06)"
    assert weather.baselines_text(s) == "seasonal naive MASE 1.309; naive MASE 1.548" and weather.chance(s) == ""
    s = {"final": {"accuracy": 0.78912},
         "baselines": {"tfidf_logreg_accuracy": 0.7928, "vader_accuracy": 0.6452, "majority_accuracy": 0.5043}}
    assert sentiment.headline(s) == "78.91% accuracy"
    assert sentiment.baselines_text(s, "baselines") == "TF-IDF + logistic regression 79.28%; VADER 64.52%"
    assert sentiment.chance(s) == "majority class 50.43%"
