"""The translation task end to end on a small TSV of the user's own pairs, and its sacreBLEU metric."""
import json
import random

from pillars import metrics
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


def test_translation_rejects_a_malformed_tsv(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("hola\thello\nsin tabulador\n")
    r = pillars("train", "bible-translate", "--max-steps", "1", *sets(f"data={bad}"), check=False)
    assert r.returncode == 2 and "line 2" in r.stderr and "no tab" in r.stderr
