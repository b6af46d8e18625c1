"""Tokenizers, token windows, the Kneser-Ney baseline, and the language-model tasks end to end."""
import json

import numpy as np
import pytest
import torch

from pillars import tasks
from pillars.baselines import KneserNey, naive_forecast, seasonal_naive_forecast
from pillars.data import tokenizers
from pillars.data.batches import TokenWindows, scored_windows
from pillars.tasks.language import LANGUAGE_MODEL, text_splits
from pillars.train import resolve_config
from tests.conftest import pillars, sets


def test_char_tokenizer_round_trip_and_unknowns(tmp_path):
    tok = tokenizers.CharTokenizer.train("the cat sat\n")
    assert tok.decode(tok.encode("the cat")) == "the cat"
    assert tok.encode("q")[0] == tok.unk
    tok.save(tmp_path / "t.json")
    assert tokenizers.load(tmp_path / "t.json").to_json() == tok.to_json()


def test_word_tokenizer_keeps_frequent_words_and_detokenizes():
    tok = tokenizers.WordTokenizer.train("The people, the people! Congress acts.\n\nThe end.", size=6)
    assert tok.vocab[0] == tokenizers.UNK and len(tok) == 6
    ids = tok.encode("The people act, the end.")
    assert tokenizers.UNK in [tok.vocab[i] for i in ids]   # "act" and "end" are rare here
    assert tok.decode(tok.encode("the people, the people!")) == "the people, the people!"
    pad_first = tokenizers.WordTokenizer.train("a b b", size=4, specials=(tokenizers.PAD, tokenizers.UNK))
    assert pad_first.vocab[:2] == [tokenizers.PAD, tokenizers.UNK]


def test_bpe_tokenizer_is_lossless_and_counts_every_character_once(tmp_path):
    text = "The Union’s state is strong — très fort.\n\nThe people, the people! " * 20
    tok = tokenizers.BPETokenizer.train([text], size=300)
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) < len(text) / 2
    assert tok.char_lengths(text).sum() == len(text)   # multi-byte characters are not counted twice
    tok.save(tmp_path / "t.json")
    again = tokenizers.load(tmp_path / "t.json")
    assert np.array_equal(again.encode(text), ids) and again.to_json() == tok.to_json()


def test_token_windows_are_a_pure_function_of_the_step():
    tokens = torch.arange(1000)
    a, b = TokenWindows(tokens, 16, 8, seed=3), TokenWindows(tokens, 16, 8, seed=3)
    x, y = a.batch(5)
    assert torch.equal(x, b.batch(5)[0]) and torch.equal(y, x + 1)
    assert not torch.equal(x, a.batch(6)[0])
    halves = [a.batch(5, r, 2)[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), x)   # the ranks' shares make up the global batch


def test_scored_windows_score_every_target_exactly_once():
    tokens = torch.arange(101)
    x, y, w = scored_windows(tokens, torch.ones(101), 16)
    assert torch.equal(y - x, torch.ones_like(x))
    assert sorted(y[w > 0].tolist()) == list(range(1, 101))


def test_kneser_ney_is_a_distribution_and_beats_lower_orders_on_structured_text():
    rng = np.random.default_rng(0)
    V = 6
    train = rng.integers(0, V, 3000)
    train[1::2] = (train[::2] + 1) % V          # every odd token follows from the one before
    highest = KneserNey(3, V).fit(train)   # one fit serves every order up to 3
    for order in (1, 2, 3):
        for kn, asked in ((KneserNey(order, V).fit(train), None), (highest, order)):
            for history in ([0, 1], [5, 5], [2, 3]):
                total = sum(np.exp(kn.log_probs(np.array(history + [w]), asked)[-1]) for w in range(V))
                assert total == pytest.approx(1.0, abs=1e-9)
    test = train[:1000]
    nll = [-KneserNey(o, V).fit(train).log_probs(test).mean() for o in (1, 2, 3)]
    assert nll[1] < nll[0] - 0.3 and nll[2] <= nll[1] + 1e-3
    # a lower order read from the higher fit is the model of that order: its top level counts n-grams,
    # the levels below count continuations (not the higher model's levels cut short)
    for order in (1, 2):
        assert np.array_equal(highest.log_probs(test, order), KneserNey(order, V).fit(train).log_probs(test))
    with pytest.raises(ValueError, match="order 4 is not between 1 and the fitted order 3"):
        highest.log_probs(test, 4)


def test_naive_forecasts():
    history = np.arange(48.0)[None]
    assert naive_forecast(history, 3).tolist() == [[47.0, 47.0, 47.0]]
    assert seasonal_naive_forecast(history, 30, 24)[0, :3].tolist() == [24.0, 25.0, 26.0]
    assert seasonal_naive_forecast(history, 30, 24)[0, 24].tolist() == 24.0


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """A small real text: the opening of the State of the Union corpus."""
    from pillars import data
    text = data.load("sotu")["train_text"][:300_000].tobytes().decode()
    path = tmp_path_factory.mktemp("text") / "speeches.txt"
    path.write_text(text)
    return path


def test_char_lstm_learns_real_text_saves_its_vocabulary_and_samples(tmp_path, text_file):
    run = tmp_path / "run"
    pillars("train", "sotu-char-lstm", "--max-steps", "150", "--out", str(run), "--no-progress",
            *sets(f"data={text_file}", "embed=64", "hidden=128", "layers=1", "context=64", "batch_size=32",
                  "eval_every=150", "eval_batches=10", "precision=32"))
    summary = json.loads((run / "summary.json").read_text())
    # a uniform guess over ~70 characters is 6.1 bits; the unigram distribution of English about 4.1
    assert summary["final"]["bits_per_char"] < 3.2, summary["final"]
    b = summary["baselines"]   # the order is chosen on the validation text, before the test text
    assert 2 <= b["kneser_ney_order"] <= 9 and 1.0 < b["kneser_ney_bits_per_char"] < 3.5, b
    assert json.loads((run / "tokenizer.json").read_text())["kind"] == "char"
    out = pillars("sample", str(run), "--prompt", "The Congress", "--length", "40", "--seed", "1").stdout
    assert out.startswith("The Congress") and len(out) >= 50
    again = pillars("sample", str(run), "--prompt", "The Congress", "--length", "40", "--seed", "1").stdout
    assert again == out
    pillars("explain", str(run))
    span = json.loads((run / "explain.json").read_text())["memory_span"]
    assert span["1"] > span["16"] + 0.5      # a character model predicts far better with some history
    assert (run / "memory_span.png").stat().st_size > 10_000 and (run / "cells.png").stat().st_size > 10_000


def test_language_model_rejects_bad_input(tmp_path):
    missing = pillars("train", "sotu-char-lstm", "--max-steps", "1", *sets(f"data={tmp_path}/nope.txt"),
                      check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    bad = pillars("train", "sotu-char-lstm", "--max-steps", "1", *sets(f"data={binary}"), check=False)
    assert bad.returncode == 2 and "UTF-8" in bad.stderr
    short = tmp_path / "short.txt"
    short.write_text("too short")
    small = pillars("train", "sotu-char-lstm", "--max-steps", "1", *sets(f"data={short}"), check=False)
    assert small.returncode == 2 and "context" in small.stderr
    half = pillars("train", "text-file", "--max-steps", "1", *sets(f"data={short}", "val_fraction=0.5"), check=False)
    assert half.returncode == 2 and "val_fraction must be between 0 and 0.5" in half.stderr


def test_sample_rejects_runs_that_are_not_language_models(tmp_path):
    r = pillars("sample", str(tmp_path), check=False)
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_char_gpt_learns_real_text_and_samples_with_the_kv_cache(tmp_path, text_file):
    run = tmp_path / "gpt"
    pillars("train", "sotu-char-gpt", "--max-steps", "300", "--out", str(run), "--no-progress",
            *sets(f"data={text_file}", "layers=2", "width=64", "heads=4", "context=64", "batch_size=32",
                  "eval_every=300", "eval_batches=10", "ngram=false", "precision=32", "lr=1e-2"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["bits_per_char"] < 3.1, summary["final"]
    out = pillars("sample", str(run), "--prompt", "The Congress", "--length", "100", "--top-p", "0.9").stdout
    assert out.startswith("The Congress") and len(out) >= 100   # longer than the context: the window slides
    pillars("explain", str(run))
    result = json.loads((run / "explain.json").read_text())
    dist = result["attention_distance"]
    assert len(dist) == 2 and all(len(layer) == 4 and all(0 <= d <= 63 / 2 for d in layer) for layer in dist)
    kv = result["kv_cache_seconds"]
    assert kv["tokens"][-1] == 64 and len(kv["KV cache"]) == len(kv["recomputing"]) == len(kv["tokens"])
    for png in ("memory_span.png", "attention_distance.png", "kv_cache.png"):
        assert (run / png).stat().st_size > 10_000


def test_text_file_task_trains_either_model_on_an_exported_corpus(tmp_path):
    whole = tmp_path / "sotu.txt"
    pillars("data", "export", "sotu", str(whole))
    text = whole.read_text(encoding="utf-8")
    assert len(text) > 10_000_000 and text.count("\n\n") >= 232   # 233 addresses, a blank line between them
    part = tmp_path / "part.txt"
    part.write_text(text[:200_000], encoding="utf-8")
    for model, extra in (("lstm", ["layers=1", "hidden=64", "embed=64"]), ("gpt", ["layers=1", "width=64"])):
        run = tmp_path / model
        pillars("train", "text-file", "--max-steps", "150", "--out", str(run), "--no-progress",
                *sets(f"data={part}", f"model={model}", *extra, "context=64", "batch_size=32", "lr=1e-2",
                      "ngram=false", "precision=32", "val_fraction=0.2"))
        s = json.loads((run / "summary.json").read_text())
        assert s["final"]["bits_per_char"] < 4.0, (model, s["final"])   # uniform over ~80 characters: 6.3
    need = pillars("train", "text-file", "--max-steps", "1", check=False)
    assert need.returncode == 2 and "--set data=FILE" in need.stderr and "data export sotu" in need.stderr
    other = pillars("data", "export", "fashion-mnist", str(tmp_path / "x.txt"), check=False)
    assert other.returncode == 2 and "not a text corpus" in other.stderr and not (tmp_path / "x.txt").exists()
    again = pillars("data", "export", "sotu", str(part), check=False)
    assert again.returncode == 2 and "already exists: data export never replaces a file" in again.stderr
    assert part.read_text(encoding="utf-8") == text[:200_000]   # the user's file is kept


def scored_targets(held_out: tuple) -> list[int]:
    """The tokens a held-out set of windows scores, in order (each once)."""
    x, y, w = held_out
    return y[w > 0].tolist()   # windows in order, each scoring the targets after the one before


def test_a_users_text_is_cut_at_its_end_into_valid_then_test_the_same_for_every_seed(text_file):
    text = text_file.read_text()
    cfg = {"data": str(text_file), "val_fraction": 0.1}
    train, valid, test = text_splits(cfg, "")
    assert train + valid + test == text
    assert test == text[int(len(text) * 0.9):]                           # the test text of every earlier run
    assert valid == text[int(len(text) * 0.8):int(len(text) * 0.9)]      # the tenth before it
    jobs = [tasks.get("text-file").make_job(resolve_config("text-file", overrides={
        "data": str(text_file), "seed": seed, "layers": 1, "width": 16, "heads": 2, "context": 32}), torch.device("cpu"))
        for seed in (0, 1)]
    tok = jobs[0].tokenizer
    assert scored_targets(jobs[0].valid) == tok.encode(valid)[1:].tolist()   # validation reads the valid text alone
    assert scored_targets(jobs[0].test) == tok.encode(test)[1:].tolist()
    assert jobs[0].test_text == test and torch.equal(jobs[0].test_ids, torch.from_numpy(tok.encode(test)))
    assert all(torch.equal(a, b) for a, b in zip(jobs[0].valid, jobs[1].valid))
    assert len(jobs[0].train.tokens) == len(tok.encode(train))              # training reads the rest


def test_corpora_keep_their_own_split():
    from pillars.data.text import corpus_splits
    for corpus in ("sotu", "brown"):
        splits = corpus_splits(corpus)
        assert text_splits({"data": ""}, corpus) == (splits["train"], splits["valid"], splits["test"])


def test_language_model_headline_and_baselines_as_text():
    char = {"final": {"bits_per_char": 1.91234, "perplexity": 3.3},
            "baselines": {"kneser_ney_order": 9, "kneser_ney_perplexity": 4.1, "kneser_ney_bits_per_char": 2.0567,
                          "unigram_perplexity": 25.0, "unigram_bits_per_char": 4.8012}}
    assert LANGUAGE_MODEL.headline(char) == "1.912 bits/char"
    assert LANGUAGE_MODEL.baselines_text(char, "baselines") == "Kneser-Ney 9-gram 2.057 bits/char"
    assert LANGUAGE_MODEL.chance(char) == "character frequencies alone 4.801 bits/char"
    word = {"final": {"perplexity": 196.44},
            "baselines": {"kneser_ney_order": 3, "kneser_ney_perplexity": 231.26, "unigram_perplexity": 901.2}}
    assert LANGUAGE_MODEL.headline(word) == "perplexity 196.4"
    assert LANGUAGE_MODEL.baselines_text(word) == "Kneser-Ney 3-gram perplexity 231.3; word frequencies alone " \
                                                  "perplexity 901.2"
    assert LANGUAGE_MODEL.chance({"final": {"perplexity": 1.0}}) == ""


def test_a_run_whose_training_text_changed_is_refused_not_mis_decoded(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 400)
    run = tmp_path / "run"
    pillars("train", "text-file", "--out", str(run), "--no-progress",
            *sets(f"data={text}", "model=lstm", "embed=16", "hidden=16", "layers=1", "context=16", "batch_size=8",
                  "max_steps=2", "ngram=false", "precision=32"))
    assert pillars("sample", str(run), "--length", "5").returncode == 0
    text.write_text("xyzxyzxyq " * 400)   # another alphabet: the rebuilt vocabulary differs from tokenizer.json
    r = pillars("sample", str(run), "--length", "5", check=False)
    assert r.returncode == 2 and "has changed since it was trained" in r.stderr
