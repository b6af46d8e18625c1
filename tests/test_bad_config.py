"""Every configuration key is checked where it enters (`train.resolve_config`), before any data is read: a
bad value ends `pillars train` with status 2 and a message that names the key and the value, not a traceback,
a misleading message, or a run that trains on garbage."""
import pytest

from pillars import tasks, train
from pillars.config import ConfigError, Range
from tests.conftest import ROOT, pillars, sets

# (task, key, value, words of the message)
BAD = [
    ("fashion-cnn", "lr", "nan", "finite"),
    ("fashion-cnn", "lr", "inf", "finite"),
    ("fashion-cnn", "lr", "0", "above 0"),
    ("fashion-cnn", "lr", "-1", "above 0"),
    ("fashion-cnn", "epochs", "inf", "finite"),
    ("fashion-cnn", "epochs", "nan", "finite"),
    ("fashion-cnn", "weight_decay", "nan", "finite"),
    ("fashion-cnn", "grad_clip", "-inf", "finite"),
    ("fashion-cnn", "ema", "nan", "below 1"),
    ("fashion-cnn", "momentum", "1", "below 1"),
    ("fashion-cnn", "min_lr_ratio", "2", "between 0 and 1"),
    ("fashion-cnn", "betas", "0.9,1.5", "two numbers"),
    ("fashion-cnn", "seed", "-1", "between 0 and"),
    ("fashion-cnn", "eval_batch_size", "0", "at least 1"),
    ("fashion-cnn", "accum_steps", "3", "divide evenly"),
    ("fashion-resnet", "label_smoothing", "5", "below 1"),
    ("bible-translate", "label_smoothing", "-0.1", "at least 0"),
    ("fashion-cnn", "dropout", "1", "below 1"),
    ("sotu-char-gpt", "dropout", "1.5", "below 1"),
    ("fashion-cnn", "erase", "1.5", "between 0 and 1"),
    ("fashion-cnn", "valid_fraction", "1", "between 0 and 1"),
    ("image-folder", "test_fraction", "0", "between 0 and 1"),
    ("text-file", "val_fraction", "0.5", "between 0 and 0.5"),
    ("bible-translate", "valid_fraction", "0.6", "between 0 and 0.5"),
    ("weather-lstm", "valid_fraction", "0.9", "nothing to train on"),
    ("fashion-transfer", "bn_momentum", "2", "between 0 and 1"),
    ("fashion-vit", "patch", "5", "divisor of 28"),
    ("fashion-vit", "heads", "3", "multiple of heads"),
    ("sotu-char-gpt", "heads", "3", "multiple of heads"),
    ("sotu-gpt", "width", "250", "multiple of heads"),
    ("text-file", "heads", "7", "multiple of heads"),
    ("movie-sentiment-transformer", "heads", "5", "multiple of heads"),
    ("bible-translate", "heads", "3", "multiple of heads"),
    ("fashion-cnn", "stages", "5", "at most 4 stages"),
    ("digits-cnn", "stages", "4", "at most 3 stages"),
    ("fashion-resnet", "stages", "6", "at most 5 stages"),
    ("image-folder", "stages", "8", "at most 7 stages"),
    ("image-folder", "channels", "2", "1 (grey), 3 (colour)"),
    ("sotu-char-lstm", "context", "1", "at least 2"),
    ("sotu-gpt", "context", "1", "at least 2"),
    ("sotu-lstm", "vocab_size", "1", "tokenizer=word"),
    ("movie-sentiment-lstm", "vocab_size", "2", "at least 3"),
    ("sotu-char-lstm", "tokenizer", "sentencepiece", "must be one of"),
    ("text-file", "model", "rnn", "must be one of"),
    ("weather-lstm", "station", "paris", "must be one of"),
    ("weather-lstm", "variable", "rain", "must be one of"),
    ("weather-lstm", "history", "10", "season 24"),
    ("weather-lstm", "cell", "gru", "must be one of lstm, rnn"),
    ("adding-problem", "forget_bias", "nan", "finite"),
    ("adding-problem", "lag", "2", "at least 4"),
    ("fashion-dcgan", "loss", "wasserstein", "must be one of"),
    ("mnist-5k-dcgan", "conditional", "true", "unconditional"),
    ("bible-translate", "beam", "0", "at least 1"),
    ("bible-translate", "length_penalty", "-1", "at least 0"),
    ("spoken-digits-lstm", "cell", "gru", "must be one of lstm, rnn"),
    ("spoken-digits-lstm", "bidirectional", "both", "true or false"),
    ("spoken-digits-lstm", "hidden", "0", "at least 1"),
    ("spoken-digits-lstm", "layers", "0", "at least 1"),
    ("spoken-digits-lstm", "dropout", "1", "below 1"),
]


@pytest.fixture
def no_training(monkeypatch):
    """A check that let its value through fails here at once instead of starting a run."""
    def refuse(*args, **kwargs):
        raise AssertionError("the bad value reached the start of training")
    monkeypatch.setattr(train, "init_process", refuse)


@pytest.mark.parametrize("task,key,value,words", BAD, ids=[f"{t}-{k}={v}" for t, k, v, _ in BAD])
def test_a_bad_value_is_a_clear_error_before_any_data(task, key, value, words, no_training):
    r = pillars("train", task, "--max-steps", "1", *sets(f"{key}={value}"), check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert key in r.stderr and value in r.stderr and words in r.stderr, r.stderr[-2000:]


def test_the_message_names_the_fix():
    with pytest.raises(ConfigError, match=r"label_smoothing must be at least 0 and below 1, not 5.0: .*"
                                          r"fashion-resnet's default is --set label_smoothing=0.1"):
        train.resolve_config("fashion-resnet", overrides={"label_smoothing": "5"})
    with pytest.raises(ConfigError, match=r"--set width=129, or heads among the divisors of 128"):
        train.resolve_config("fashion-vit", overrides={"heads": "3"})


def test_every_task_default_and_shipped_config_passes():
    for name in tasks.all_tasks():
        cfg = train.resolve_config(name)
        train.check_config(cfg, name)      # with the task's own ranges, as every command checks (--resume too)
    for path in sorted((ROOT / "configs").glob("*.toml")):
        task = next(line.split()[3] for line in path.read_text().splitlines() if "pillars train" in line)
        train.resolve_config(task, str(path))


def test_the_edges_of_a_range():
    closed, half_open, open_ = Range(0, 1), Range(0, 1, "[)"), Range(0, 1, "()")
    assert closed.holds(0) and closed.holds(1) and not closed.holds(1.01)
    assert half_open.holds(0) and not half_open.holds(1)
    assert not open_.holds(0) and not open_.holds(1) and open_.holds(0.5)
    assert not Range(-float("inf"), float("inf")).holds(float("nan"))
    assert Range(1).phrase() == "at least 1" and Range(0, 0.5, "()").phrase() == "between 0 and 0.5 (exclusive)"
