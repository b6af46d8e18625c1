"""The translation task end to end on a small TSV of the user's own pairs, and its sacreBLEU metric."""
import json
import random

import numpy as np
import torch

from pillars import explain, metrics, train
from tests.conftest import pillars, sets


def test_translation_sums_add_up_to_sacrebleus_corpus_scores():
    from sacrebleu.metrics import BLEU, CHRF
    hyps = ["the cat sat on the mat", "hello there world", "a b c"]
    refs = ["the cat sat on a mat", "hello world", "a b d"]
    a, b = metrics.translation_sums(hyps[:2], refs[:2]), metrics.translation_sums(hyps[2:], refs[2:])
    scores = metrics.translation_summary({k: float(a[k] + b[k]) for k in a})
    assert abs(scores["bleu"] - BLEU().corpus_score(hyps, [refs]).score) < 1e-9
    assert abs(scores["chrf"] - CHRF().corpus_score(hyps, [refs]).score) < 1e-9


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
    pillars("train", "bible-translate", "--max-steps", "500", "--out", str(run), "--no-progress",
            *sets(f"data={tsv}", "width=64", "encoder_layers=2", "decoder_layers=2", "vocab_size=300",
                  "max_tokens=24", "eval_every=500", "precision=32", "lr=3e-3", "warmup_steps=30", "dropout=0"))
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
    _, _, job, _ = train.load_run(run, "cpu")
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
