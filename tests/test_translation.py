"""The translation task end to end on a small TSV of the user's own pairs, its sacreBLEU metric, its splits."""
import json
import random

import numpy as np
import pytest
import torch

from pillars import explain, metrics, runs
from pillars.tasks.translation import TranslationFamily, sentence_pairs
from tests.conftest import pillars, sets


def test_translation_sums_gather_the_hypotheses_for_sacrebleus_corpus_scores():
    import sacrebleu
    vocab = "the cat sat on a mat hello there world . , b c d ! my dog".split()
    hyps = ["the cat sat on the mat .", "hello there world !", "a b c", "my dog , the cat", "d d d"]
    refs = ["the cat sat on a mat .", "hello world !", "a b d", "the dog , my cat", "a b c d"]
    ids = [[vocab.index(w) for w in h.split()] for h in hyps]
    decode = lambda row: " ".join(vocab[i] for i in row)   # noqa: E731

    def sums(index):   # one batch: the hypotheses at `index`, in a table of all 5 sentences, 8 tokens wide
        return metrics.translation_sums([ids[i] for i in index], torch.tensor(index), len(hyps), 8)

    # three batches (two processes' shares, one sentence decoded twice as a process's padding), added up
    batches = [sums([0, 1]), sums([4, 2]), sums([3, 4])]
    total = {k: sum(b[k] for b in batches).numpy() for k in batches[0]}
    scores = metrics.translation_summary(total, refs, decode)
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert scores["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    # a part of the set (a periodic evaluation of a few batches) is scored on the sentences it decoded
    part = metrics.translation_summary({k: v.numpy() for k, v in sums([3, 1]).items()}, refs, decode)
    assert part["bleu"] == sacrebleu.corpus_bleu([hyps[1], hyps[3]], [[refs[1], refs[3]]]).score
    assert part["chrf"] == sacrebleu.corpus_chrf([hyps[1], hyps[3]], [[refs[1], refs[3]]]).score


def test_translation_headline_names_the_decoding():
    family = TranslationFamily()
    assert family.headline({"final": {"bleu": 21.04, "chrf": 45.66, "beam": 4}}) == "BLEU 21.0, chrF 45.7 (beam)"
    assert family.headline({"final": {"bleu": 19.96, "chrf": 44.0, "beam": 1}}) == "BLEU 20.0, chrF 44.0 (greedy)"
    assert family.baselines_text({"final": {}}) == "" and family.chance({"final": {}}) == ""


def test_a_users_tsv_is_split_three_ways_with_a_fixed_seed(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"uno {i}\tone {i}\n" for i in range(200)))
    cfg = {"data": str(tsv), "valid_fraction": 0.05, "seed": 0}
    train, valid, test = sentence_pairs(cfg)
    assert (len(train), len(valid), len(test)) == (180, 10, 10)
    assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
    assert sentence_pairs({**cfg, "seed": 7}) == (train, valid, test)   # every run of the file shares the split
    # the test set is the one the task always held out: the first 5% of a permutation seeded 0, in file order
    held = set(np.random.default_rng(0).permutation(200)[:10].tolist())
    assert test == [(f"uno {i}", f"one {i}") for i in sorted(held)]
    with pytest.raises(Exception, match="valid_fraction must be between 0 and 0.5"):
        sentence_pairs({**cfg, "valid_fraction": 0.5})


def test_bible_pairs_validation_books_are_neither_trained_on_nor_tested():
    train, valid, test = sentence_pairs({"data": "", "valid_fraction": 0.05, "seed": 3})
    assert len(valid) == 885 and len(test) == 978
    assert not set(valid) & set(train) and not set(valid) & set(test)
    assert sentence_pairs({"data": "", "valid_fraction": 0.05, "seed": 4})[1] == valid


def test_translation_learns_a_small_tsv_and_translates(tmp_path):
    es = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
    en = "zero one two three four five six seven eight nine".split()
    rng = random.Random(0)
    lines = []
    for _ in range(3000):
        digits = [rng.randrange(10) for _ in range(rng.randint(2, 6))]
        lines.append(" ".join(es[d] for d in digits) + "\t" + " ".join(en[d] for d in digits))
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    pillars("train", "bible-translate", "--max-steps", "600", "--out", str(run), "--no-progress",
            *sets(f"data={tsv}", "width=64", "encoder_layers=2", "decoder_layers=2", "vocab_size=300",
                  "max_tokens=24", "eval_every=600", "precision=32", "lr=3e-3", "warmup_steps=30", "dropout=0"))
    final = json.loads((run / "summary.json").read_text())["final"]
    assert final["bleu"] > 90 and final["chrf"] > 90, final
    out = pillars("translate", str(run), "tres uno cuatro", "nueve nueve", "--beam", "3").stdout.splitlines()
    assert out == ["three one four", "nine nine"]
    beam = json.loads(pillars("evaluate", str(run), "--set", "beam=3").stdout)
    assert beam["bleu"] > 90, beam
    bad = pillars("evaluate", str(run), "--set", "beams=3", check=False)
    assert bad.returncode == 2 and "Did you mean 'beam'" in bad.stderr

    # the decoder's cross-attention aligns each output word with the source word it translates
    pillars("explain", str(run), "--source", "siete dos cinco ocho uno")
    assert json.loads((run / "explain.json").read_text())["translation"] == "seven two five eight one"
    assert (run / "cross_attention.png").stat().st_size > 10_000
    job = runs.load(run, "cpu").job
    tok, model = job.tokenizer, job.model.eval()
    src = torch.from_numpy(tok.encode("siete dos cinco ocho uno"))[None]
    hyp = model.greedy(src)[0]
    weights = explain.cross_attention(model, src, hyp)    # (layers, heads, len(hyp) + 1, source tokens)
    assert weights.shape[:2] == (2, 4) and weights.shape[2:] == (len(hyp) + 1, src.shape[1])
    assert np.allclose(weights.sum(-1), 1, atol=1e-5)
    def word_of(ids):   # byte-level BPE pieces: a new word starts at a piece with a leading space
        pieces = [tok.decode([int(i)]) for i in ids]
        return np.cumsum([i == 0 or p.startswith(" ") for i, p in enumerate(pieces)]) - 1
    src_word, hyp_word = word_of(src[0]), word_of(hyp)
    w = weights.mean((0, 1))[:len(hyp)]                 # (output tokens, source tokens), layers and heads
    S, T = src_word.max() + 1, hyp_word.max() + 1
    by_word = np.zeros((T, S))
    np.add.at(by_word, (hyp_word[:, None].repeat(w.shape[1], 1), src_word[None].repeat(len(hyp), 0)), w)
    assert (by_word.argmax(1) == np.arange(T)).sum() >= 4, by_word.round(2)   # the diagonal: word i reads word i


def test_translation_rejects_a_malformed_tsv(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("hola\thello\nsin tabulador\n")
    r = pillars("train", "bible-translate", "--max-steps", "1", *sets(f"data={bad}"), check=False)
    assert r.returncode == 2 and "line 2" in r.stderr and "no tab" in r.stderr
