"""BERT-style pretraining: the masking against the paper's recipe, the masked language model's output layer
and the encoder it hands to a classifier, a short real-text run, and fine-tuning from it on few labels."""
import json

import pytest
import torch

from pillars.models import transformer
from tests.conftest import pillars, sets


def test_bert_masking_chooses_15_percent_of_the_real_tokens_and_corrupts_them_80_10_10():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(3, 1000, (400, 120), generator=g)
    idx[:, 5] = 1                                   # an unknown token: never chosen
    lengths = torch.randint(10, 121, (400,), generator=g)
    out, where, targets = transformer.bert_masking(idx, lengths, mask_id=2, vocab_size=1000, first_word=3,
                                                   generator=torch.Generator().manual_seed(1))
    real = (torch.arange(120) < lengths[:, None]) & (idx >= 3)
    assert not where[~real].any() and torch.equal(out[~where], idx[~where])   # padding and specials untouched
    assert abs(where.sum() / real.sum() - 0.15) < 0.01
    assert torch.equal(targets, idx[where])
    chosen = out[where]
    masked, kept = (chosen == 2).float().mean(), (chosen == targets).float().mean()
    assert abs(masked - 0.8) < 0.015 and abs(kept - 0.1) < 0.01
    assert abs(1 - masked - kept - 0.1) < 0.01 and chosen[chosen != 2].min() >= 3   # random: real tokens only


def test_the_masked_language_model_reads_both_sides_ties_its_output_and_hands_its_encoder_on():
    cfg = transformer.EncoderClassifierConfig(vocab_size=50, width=16, heads=2, layers=2, max_len=12, dropout=0.0)
    mlm = transformer.MaskedLanguageModel(cfg).eval()
    idx, lengths = torch.randint(3, 50, (3, 10)), torch.tensor([10, 7, 4])
    logits = mlm(idx, lengths)
    assert logits.shape == (3, 10, 50)
    where = torch.zeros(3, 10, dtype=torch.bool)
    where[0, 2] = where[1, 6] = True
    assert torch.allclose(mlm(idx, lengths, where), logits[where], atol=1e-5)
    later = idx.clone()
    later[0, 8] = (idx[0, 8] + 1 - 3) % 47 + 3                   # a token after position 2 changes its guess
    assert not torch.allclose(mlm(later, lengths)[0, 2], logits[0, 2])
    padding = idx.clone()
    padding[2, 4:] = 0                                           # what follows the length changes nothing
    assert torch.allclose(mlm(padding, lengths)[2, :4], logits[2, :4], atol=1e-5)
    mlm(idx, lengths, where).sum().backward()
    assert mlm.tok.weight.grad is not None and mlm.bias.grad is not None   # the output layer is the embedding's T

    classifier = transformer.EncoderClassifier(cfg).eval()
    body = transformer.encoder_state(mlm)
    assert "head.weight" not in body and "bias" not in body and "tok.weight" in body
    assert {k.split(".")[0] for k in transformer.Encoder(cfg).state_dict()} == set(transformer.ENCODER_PARTS)
    classifier.load_state_dict(body, strict=False)
    assert torch.allclose(classifier.encode(idx, lengths), mlm.encode(idx, lengths))
    mean = transformer.EncoderClassifier(transformer.EncoderClassifierConfig(**{**cfg.__dict__, "pool": "mean"})).eval()
    h = mean.encode(idx, lengths)[2, 1:5]                        # the third row's four real tokens
    assert torch.allclose(mean(idx, lengths)[2], mean.head(h.mean(0)), atol=1e-5)
    assert torch.allclose(mean(padding, lengths), mean(idx, lengths), atol=1e-5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A user's text file: the first 400,000 characters of the English Bible."""
    from pillars.data.text import corpus_splits
    path = tmp_path_factory.mktemp("corpus") / "bible.txt"
    path.write_text(corpus_splits("bible-web")["train"][:400_000], encoding="utf-8")
    return path


TINY_MLM = {"vocab_size": 500, "context": 32, "width": 64, "heads": 2, "layers": 2, "batch_size": 32, "dropout": 0.0,
            "max_steps": 500, "eval_every": 250, "warmup_steps": 50, "lr": 1e-3, "eval_batches": 4}


def test_pretraining_on_a_users_text_beats_the_unigram_and_fills_masks(tmp_path, corpus):
    run = tmp_path / "mlm"
    pillars("train", "text-mlm", "--out", str(run), "--no-progress",
            *sets(f"data={corpus}", *(f"{k}={v}" for k, v in TINY_MLM.items())))
    summary = json.loads((run / "summary.json").read_text())
    final, base = summary["final"], summary["baselines"]
    # 500 steps: past the plateau where a masked language model guesses the commonest token (4% here)
    assert final["masked_accuracy"] > base["unigram_masked_accuracy"] + 0.03, (final, base)
    assert final["masked_loss"] < base["unigram_masked_loss"]
    out = pillars("sample", str(run), "--prompt", "And God said, <mask> there be light.").stdout
    assert out.startswith("<mask> 1: ") and out.count("%") == 5
    r = pillars("sample", str(run), "--prompt", "no mask here", check=False)
    assert r.returncode == 2 and "<mask>" in r.stderr
    small = tmp_path / "small.txt"
    small.write_text("In the beginning God created the heavens and the earth.\n" * 200, encoding="utf-8")
    r = pillars("train", "text-mlm", "--out", str(tmp_path / "bad"), "--no-progress",
                *sets(f"data={small}", "vocab_size=300"), check=False)
    assert r.returncode == 2 and "chunks of 128 tokens" in r.stderr and "longer text" in r.stderr


def test_fine_tuning_starts_from_the_pretrained_encoder_on_few_labels(tmp_path, corpus, monkeypatch):
    """movie-sentiment-transfer requires text-mlm (trained once into its folder, then reused); with
    pretrained=true the classifier's encoder starts as the pretrained one, with false from random weights
    (the same tokens and shape); `labelled` snippets, half of each class, are its whole training set."""
    from pillars import runs, tasks, train
    from pillars.models.transformer import encoder_state
    from pillars.tasks import pretraining
    monkeypatch.setattr(pretraining, "mlm_dir", lambda: tmp_path / "text-mlm")
    monkeypatch.setattr(pretraining, "MLM_RECIPE", {**TINY_MLM, "data": str(corpus), "max_steps": 20})
    monkeypatch.setattr(pretraining, "in_domain_dir", lambda: tmp_path / "text-mlm-reviews")
    monkeypatch.setattr(pretraining, "IN_DOMAIN_RECIPE", {**pretraining.IN_DOMAIN_RECIPE, "max_steps": 4,
                                                          "batch_size": 32, "eval_every": 4, "eval_batches": 2})
    task = tasks.get("movie-sentiment-transfer")
    said = []
    runs.ensure(task.requires({"encoder": "text-mlm"})["encoder"], "cpu", log=said.append)
    assert said and (tmp_path / "text-mlm" / "tokenizer.json").exists()
    mlm = runs.load(tmp_path / "text-mlm", "cpu", need_data=False).job.model

    def job(**keys):
        cfg = train.resolve_config(task.name, overrides={k: str(v) for k, v in keys.items()})
        return task.make_job(cfg, torch.device("cpu"), {})
    pre, scratch = job(labelled=100), job(labelled=100, pretrained="false")
    assert all(torch.equal(v, encoder_state(pre.model)[k]) for k, v in encoder_state(mlm).items())
    assert not torch.equal(scratch.model.tok.weight, mlm.tok.weight)
    assert pre.model.tok.weight.shape == (500, 64) and scratch.model.tok.weight.shape == (500, 64)
    y = pre.train.tensors[2]
    assert len(y) == 100 and int(y.sum()) == 50 and len(pre.test[2]) == 1057
    r = pillars("train", "movie-sentiment-transfer", "--out", str(tmp_path / "ft"), "--no-progress",
                *sets("labelled=100", "max_steps=4", "eval_every=2"))
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["status"] == "finished" and "tfidf_logreg_same_labels_accuracy" in summary["baselines"]
    assert not any(line.startswith("text-mlm:") for line in r.stderr.splitlines())   # the encoder was reused
    r = pillars("train", "movie-sentiment-transfer", "--out", str(tmp_path / "odd"), *sets("labelled=99"),
                check=False)
    assert r.returncode == 2 and "even number" in r.stderr

    # the in-domain encoder: text-mlm (its weights, its tokenizer) continued on the snippets' text
    reviews = runs.ensure(task.requires({"encoder": "text-mlm-reviews"})["encoder"], "cpu", log=said.append)
    adapted = runs.load(reviews, "cpu", need_data=False)
    assert (reviews / "tokenizer.json").read_text() == (tmp_path / "text-mlm" / "tokenizer.json").read_text()
    assert adapted.cfg["corpora"] == "movie-reviews" and adapted.cfg["width"] == 64
    a, b = adapted.job.model.tok.weight, mlm.tok.weight   # trained on from text-mlm's weights, not anew
    assert not torch.equal(a, b) and torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9
    assert json.loads((reviews / "summary.json").read_text())["steps"] == 4
    in_domain = job(labelled=100, encoder="text-mlm-reviews")
    assert all(torch.equal(v, encoder_state(in_domain.model)[k]) for k, v in encoder_state(adapted.job.model).items())
    r = pillars("train", "movie-sentiment-transfer", "--out", str(tmp_path / "bad-encoder"),
                *sets("pretrained=false", "encoder=text-mlm-reviews"), check=False)
    assert r.returncode == 2 and "drop --set encoder" in r.stderr

    # the experiment: the three arms on the same labels, TF-IDF on them beside, one plot (runs reused when asked)
    out = pillars("experiment", "text-transfer", "--labels", "100", "--seeds", "1", "--out", str(tmp_path / "xp"),
                  *sets("max_steps=3", "eval_every=3")).stdout
    table = json.loads((tmp_path / "xp" / "text_transfer.json").read_text())
    assert set(table["pretrained"]) == set(table["in-domain"]) == set(table["scratch"]) == set(table["tfidf"]) \
        == {"100"}
    assert (tmp_path / "xp" / "text_transfer.png").exists() and "100" in out and "TF-IDF" in out
    r = pillars("experiment", "text-transfer", "--out", str(tmp_path / "xp"), *sets("pretrained=false"), check=False)
    assert r.returncode == 2 and "drop --set pretrained" in r.stderr
