"""Recurrent networks on sequence problems: the adding problem, forecasting and sentiment, on real data."""
import json

import numpy as np
import pytest
import torch

from pillars.data.synthetic import adding_problem
from pillars.experiments import chance_success
from tests.conftest import pillars, sets


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
    pillars("train", "movie-sentiment-transformer", "--epochs", "2", "--out", str(run), "--no-progress")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["accuracy"] > 0.68, summary["final"]     # 75.5% after 2 epochs when measured
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
                             ("adding-problem", "lag=2", "lag must be at least 4"),
                             ("sotu-char-lstm", "ngram_order=12", "ngram_order=12")):
        r = pillars("train", task, "--max-steps", "1", *sets(bad), check=False)
        assert r.returncode == 2 and words in r.stderr, (bad, r.stderr[-500:])
    flat = tmp_path / "flat.csv"
    flat.write_text("x\n" + "3.0\n" * 600)
    r = pillars("train", "weather-lstm", "--max-steps", "1", *sets(f"data={flat}", "column=x", "season=24"),
                check=False)
    assert r.returncode == 2 and "MASE is undefined" in r.stderr
