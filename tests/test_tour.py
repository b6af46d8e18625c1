"""The tour: its plan, its resumption, and a short real tour whose report is opened in headless Chromium."""
import json
import math

import pytest

from tests.conftest import headless_chromium, needs_chromium, pillars
from pillars import tasks, tour
from pillars.config import ConfigError


def test_budget_scales_training_and_keeps_a_floor():
    quick = {s.key: o for s, o in tour.plan(tour.DEFAULT_BUDGET)}
    assert list(quick) == ["cnn", "lstm", "gpt", "gan"]   # translation only with --full
    assert quick["cnn"]["epochs"] == 3.0 and quick["lstm"]["max_steps"] == 900
    half = {s.key: o for s, o in tour.plan(7.5)}
    assert half["cnn"]["epochs"] == 1.5 and half["lstm"]["max_steps"] == 450
    assert half["lstm"]["eval_every"] == 150 and {s.key: o for s, o in tour.plan(7)}["lstm"]["eval_every"] == 140
    tiny = {s.key: o for s, o in tour.plan(0.01)}
    assert tiny["lstm"]["max_steps"] == 20 and tiny["cnn"]["epochs"] == 0.02
    assert "warmup_steps" not in quick["cnn"] and half["cnn"]["warmup_steps"] == 100   # fashion-resnet's 200, halved
    assert half["gpt"]["warmup_steps"] == 25 and "warmup_steps" not in half["gan"]       # the GAN has none
    # the standard FID on 500 samples in the default tour, 16 in a short one (as test_gan: cached statistics)
    assert quick["gan"]["fid_samples"] == 500 and tiny["gan"]["fid_samples"] == 16
    # a short tour validates on part of each held-out set; the default one on the stages' own share
    assert tiny["lstm"]["eval_batches"] == 4 and quick["lstm"]["eval_batches"] == 16 and "eval_batches" not in quick["cnn"]
    full = {s.key: o for s, o in tour.plan(full=True)}
    assert "translate" in full and full["cnn"] == {}   # the tasks' own (README) configurations
    assert list(full) == ["cnn", "detect", "segment", "lstm", "speech", "stock-return", "stock-volatility", "gpt", "translate-lstm",
                          "translate", "gan"]
    assert full["translate-lstm"] == {} and full["translate"]["model"] == "transformer"   # both on French-English
    assert full["stock-volatility"] == {"series": "sp500", "target": "volatility"}
    with pytest.raises(ConfigError, match="--budget"):
        tour.plan(0)


def test_the_full_tours_stock_stages_train_explain_and_reach_the_report(tmp_path):
    """The --full tour's two stock stages, each cut to one epoch, through the tour's own stage runner: their
    runs, their explain figure and verdict, and their rows and figures in the report."""
    import io

    from rich.console import Console
    stages = [(s, {**o, "epochs": 1}) for s, o in tour.plan(full=True) if s.task == "stock-forecast"]
    console = Console(file=io.StringIO(), width=200)
    results = tour.run_stages(stages, tmp_path, tour.Progress(console, 1.0, False), console, "cpu", False, True, 0)
    rows = tour.summary_rows(stages, results)
    assert rows[0]["result"].startswith("price forecast") and "than the random walk (MASE" in rows[0]["result"]
    assert rows[1]["result"].startswith("weekly variance forecast") and "GARCH(1,1) (QLIKE" in rows[1]["result"]
    page = tour.write_report(tmp_path, stages, results, rows, tour.DEFAULT_BUDGET, True, 60.0).read_text()
    for stage, _ in stages:
        assert (tmp_path / stage.key / "stock_forecasts.png").stat().st_size > 0
    assert page.count('alt="stock_forecasts.png"') == 2 and "DM p=" in page


def test_report_shows_what_the_family_lists_with_test_and_validation_figures(tmp_path):
    """The report and the summary row of one stage, from a run folder made by hand (no training): the headline
    is the family's, the figures come in the family's order, the table shows test and validation figures."""
    stages = tour.plan(tour.DEFAULT_BUDGET)[:1]
    stage = stages[0][0]
    run_dir = tmp_path / stage.key
    run_dir.mkdir()
    lines = [{"step": 10, "split": "train", "loss": 1.2}, {"step": 20, "split": "valid", "loss": 0.5, "accuracy": 0.812},
             {"step": 40, "split": "valid", "loss": 0.4, "accuracy": 0.853},
             {"step": 40, "split": "test", "loss": 0.45, "accuracy": 0.841}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = {"task": stage.task, "status": "finished", "metric": "accuracy", "final": {"loss": 0.45, "accuracy": 0.841},
               "valid": {"loss": 0.4, "accuracy": 0.853}, "steps": 40, "epochs": 0.1, "train_time_s": 3.0,
               "parameters": 1234, "precision": "32", "machine": "test machine"}
    tour.plot_curves(run_dir, summary, run_dir / "curves.png")
    results = {stage.key: {"summary": summary}}
    rows = tour.summary_rows(stages, results)
    family = tasks.get(stage.task).family
    assert rows[0]["result"] == family.headline(summary) and "84.10%" in rows[0]["result"]
    page = tour.write_report(tmp_path, stages, results, rows, tour.DEFAULT_BUDGET, False, 60.0).read_text()
    shown = [name for name in family.report_figures if f'alt="{name}"' in page]
    assert shown == ["curves.png"]   # the only figure of the family's list that this folder holds
    assert "<th>test set</th><th>validation set</th>" in page and "<td>0.841</td><td>0.853</td>" in page
    assert "validation set (held out of training) at each evaluation" in page


@pytest.fixture(scope="module")
def short_tour(tmp_path_factory):
    """A whole tour at a 0.3-minute budget: every stage trains briefly, every experiment runs (lighter)."""
    out = tmp_path_factory.mktemp("tour")
    result = pillars("tour", "--budget", "0.3", "--out", str(out), "--no-progress", timeout=900)
    return out, result


def test_short_tour_trains_all_four_pillars_above_chance(short_tour):
    out, result = short_tour
    summaries = {k: json.loads((out / k / "summary.json").read_text()) for k in ("cnn", "lstm", "gpt", "gan")}
    assert all(s["status"] == "finished" for s in summaries.values())
    # a few dozen steps each: far from the default tour's figures, but clear of chance
    assert summaries["cnn"]["final"]["accuracy"] > 0.2   # 10 classes: chance is 0.1
    for k in ("lstm", "gpt"):   # a uniform guess over the characters costs log2(V) bits
        vocab = len(json.loads((out / k / "tokenizer.json").read_text())["vocab"])
        assert summaries[k]["final"]["bits_per_char"] < math.log2(vocab) - 1.5, (k, vocab)
    assert summaries["lstm"]["final"]["bits_per_char"] < summaries["lstm"]["baselines"]["unigram_bits_per_char"]
    gan = summaries["gan"]
    assert gan["final"]["fid_fashion"] < gan["baselines"]["fid_fashion_untrained_generator"] / 1.1
    assert gan["final"]["fid_samples"] == 16 and gan["baselines"]["fid_real_train_vs_test"] > 0   # the standard FID
    assert "tour done" in result.stderr and "pillars tour" in result.stderr   # the summary table
    assert "\tfashion-resnet\t" in result.stderr   # not a terminal: plain rows, never cut
    rows = (out / "results.md").read_text()
    assert rows.count("\n| ") == 4 and "fashion-resnet" in rows and "Machine:" in rows
    for k, s in summaries.items():   # the validation set at each evaluation, the test set once at the end
        splits = [json.loads(line)["split"] for line in (out / k / "metrics.jsonl").read_text().splitlines()]
        assert splits.count("test") == 1 and splits[-1] == "test" and "valid" in splits, k
        assert s["valid"] and (out / k / "curves.png").exists() and (out / k / "tour.json").exists(), k


def test_tour_resumes_and_refuses_other_flags(short_tour):
    out, _ = short_tour
    again = pillars("tour", "--budget", "0.3", "--out", str(out), "--no-progress")   # every stage is reused
    assert "training examples" not in again.stderr and "tour done" in again.stderr
    other = pillars("tour", "--budget", "3", "--out", str(out), "--no-progress", check=False)
    assert other.returncode == 2 and "--budget" in other.stderr and "another --out" in other.stderr


@needs_chromium
def test_report_renders_in_headless_chromium(short_tour):
    out, _ = short_tour
    report = out / "report.html"
    page = report.read_text()
    assert "src=\"http" not in page and "href=\"http" not in page   # self-contained
    for key in ("cnn", "lstm", "gpt", "gan"):
        assert f'id="{key}"' in page
    driver = headless_chromium()
    try:
        driver.get(report.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1100, min(height, 16000))
        driver.save_screenshot(str(out / "report-screenshot.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    finally:
        driver.quit()
    names = [alt for alt, *_ in images]
    for expected in ("curves.png", "filters.png", "feature_maps.png", "translation.png", "memory_span.png",
                     "attention_distance.png", "sample.png", "dynamics.png"):
        assert expected in names, f"{expected} missing from the report"
    broken = [(alt, w, h) for alt, complete, w, h in images if not complete or w == 0 or h == 0]
    assert not broken, f"images that did not load: {broken}"
    assert not errors, f"the page logged: {errors}"
    assert (out / "report-screenshot.png").stat().st_size > 10_000


def test_the_full_tours_experiments_have_rows_and_sections(tmp_path):
    """The experiments of --full (their tables as the experiments write them, read back from JSON) make one row
    each in the summary table and a section with their plot in the report."""
    from pillars import experiments

    def table(arms, ns):
        return experiments.mean_std({arm: {n: [0.5 + 0.01 * i, 0.52 + 0.01 * i] for i, n in enumerate(ns)}
                                     for arm in arms})
    gan = {**table(("real", "classic", "gan"), (10, 30)), "gan_quality": table(("class_accuracy",), (10, 30))}
    text = {**table(("pretrained", "in-domain", "scratch", "tfidf"), (100, 0)), "tfidf_all": 0.79, "all": 8454}
    (tmp_path / "gan-augment").mkdir()
    (tmp_path / "text-transfer").mkdir()
    experiments.plot_mean_std(gan, [("real", "s--", "alone"), ("gan", "o-", "gan")],
                              tmp_path / "gan-augment" / "gan_augment.png", "t", "x", "y")
    experiments.plot_text_transfer(text, tmp_path / "text-transfer" / "text_transfer.png")
    results = {"gan-augment": {"table": json.loads(json.dumps(gan))},
               "text-transfer": {"table": json.loads(json.dumps(text))}}
    rows = tour.summary_rows([], results)
    assert [r["task"] for r in rows] == ["movie-sentiment-transfer", "fashion-gan-augment"]
    assert "then on the snippets' text 51.0% / 52.0% at 100 / 8,454" in rows[0]["result"]
    assert rows[1]["result"] == "with a conditional GAN's images 51.0% / 52.0% at 10 / 30 labels per class"
    assert rows[1]["baseline"].startswith("alone 51.0% / 52.0%; classic augmentation")
    page = tour.write_report(tmp_path, [], results, rows, tour.DEFAULT_BUDGET, True, 60.0).read_text()
    assert 'id="gan-augment"' in page and 'id="text-transfer"' in page
