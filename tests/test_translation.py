"""The translation tasks end to end on a small TSV of the user's own pairs, their sacreBLEU metric, the Bible
pairs and their splits, batches by length, and the decoding both encoder-decoders share."""
import json
import random
import re

import numpy as np
import pytest
import torch

from pillars import explain, metrics, runs, train
from pillars.baselines import translation_memory, unspaced
from pillars.config import ConfigError
from pillars.data import sqlite_bible, sword, text
from pillars.data.batches import TensorBatches, TokenBatches
from pillars.data.registry import load
from pillars.models import decoding
from pillars.tasks.translation import TranslationFamily, sentence_pairs
from tests.conftest import pillars, sets

DIGITS_ES = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
DIGITS_EN = "zero one two three four five six seven eight nine".split()


def digits_tsv(path, n: int = 3000):
    """Pairs of 2-6 Spanish digit words and their English words, one pair a line."""
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(2, 6))]
        lines.append(" ".join(DIGITS_ES[d] for d in digits) + "\t" + " ".join(DIGITS_EN[d] for d in digits))
    path.write_text("\n".join(lines) + "\n")
    return path


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


def test_translation_memory_answers_the_nearest_training_sources_translation():
    train_src = ["le chat noir dort", "le chien mange", "il pleut"]
    train_tgt = ["the black cat sleeps", "the dog eats", "it rains"]
    out = translation_memory(train_src, train_tgt, ["le chat dort", "il pleut fort", "xyz"], chunk=2)
    assert out == ["the black cat sleeps", "it rains", ""]   # "xyz" shares no word: no match, no translation
    assert metrics.corpus_bleu_chrf(out[:2], ["the black cat sleeps", "it rains"])["bleu"] == pytest.approx(100)
    # Chinese and Thai have no spaces between words: whole clauses would never match, character n-grams do
    chinese = ["我喜欢猫。", "今天下雨了。", "他在吃饭。"]
    assert unspaced(chinese) and unspaced(["ฉันชอบแมว"]) and not unspaced(train_src + ["나는 고양이를 좋아해"])
    out = translation_memory(chinese, ["I like cats.", "It is raining today.", "He is eating."],
                             ["我喜欢狗。", "明天下雨吗？", "xyz"])
    assert out == ["I like cats.", "It is raining today.", ""]


def test_translation_baselines_leave_the_memory_out_with_a_note_when_it_cannot_be_made(monkeypatch, capsys):
    from pillars.tasks import translation
    monkeypatch.setattr("pillars.baselines.cached_baselines", lambda name, compute, *inputs: compute())   # no cache
    test = [("uno dos", "one two")]
    wordless = translation.translation_baselines([("!!", "one"), ("?", "two")], test)   # no word to index
    assert set(wordless) == {"copy_bleu", "copy_chrf"} and "empty vocabulary" in capsys.readouterr().err
    monkeypatch.setattr(translation, "MEMORY_PAIRS", 1)
    big = translation.translation_baselines([("uno", "one"), ("dos", "two")], test)
    assert set(big) == {"copy_bleu", "copy_chrf"} and "2 training pairs, more than the 1" in capsys.readouterr().err
    assert set(translation.translation_baselines([("uno", "one")], test)) == {
        "copy_bleu", "copy_chrf", "memory_bleu", "memory_chrf"}


def test_translation_headline_names_the_decoding():
    family = TranslationFamily()
    assert family.headline({"final": {"bleu": 21.04, "chrf": 45.66, "beam": 4}}) == "BLEU 21.0, chrF 45.7 (beam)"
    assert family.headline({"final": {"bleu": 19.96, "chrf": 44.0, "beam": 1}}) == "BLEU 20.0, chrF 44.0 (greedy)"
    assert family.baselines_text({"final": {}}) == "" and family.chance({"final": {}}) == ""
    summary = {"baselines": {"memory_bleu": 7.54, "memory_chrf": 24.51, "copy_bleu": 0.07, "copy_chrf": 17.66}}
    assert family.baselines_text(summary) == ("translation memory BLEU 7.5; translation memory chrF 24.5; source "
                                              "copied unchanged BLEU 0.1; source copied unchanged chrF 17.7")
    assert family.chance(summary) == "source copied unchanged BLEU 0.1; source copied unchanged chrF 17.7"


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


def test_training_pairs_longer_than_max_tokens_are_said_to_be_left_out(tmp_path, capsys):
    from pillars.tasks.translation import build_translation
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"uno {i}\tone {i}\n" for i in range(150)) +
                   "".join(f"{'dos ' * 40}{i}\t{'two ' * 40}{i}\n" for i in range(50)))
    cfg = train.resolve_config("bible-translate", overrides={"data": str(tsv), "vocab_size": "300", "max_tokens": "16"})
    job = build_translation(cfg, torch.device("cpu"))
    err = " ".join(capsys.readouterr().err.split())
    assert "of the 180 training pairs are longer than max_tokens=16 BPE tokens on a side and are left out" in err
    tsv.write_text("".join(f"{'dos ' * 40}{i}\t{'two ' * 40}{i}\n" for i in range(200)))
    with pytest.raises(ConfigError, match="none is left to train on; raise --set max_tokens"):
        build_translation(cfg, torch.device("cpu"))
    assert job.train is not None


def test_bible_pairs_validation_books_are_neither_trained_on_nor_tested():
    train, valid, test = sentence_pairs({"data": "", "valid_fraction": 0.05, "seed": 3})
    assert len(valid) == 885 and len(test) == 978
    assert not set(valid) & set(train) and not set(valid) & set(test)
    assert sentence_pairs({"data": "", "valid_fraction": 0.05, "seed": 4})[1] == valid


def test_translation_learns_a_small_tsv_and_translates(tmp_path):
    tsv = digits_tsv(tmp_path / "pairs.tsv")
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


# ----------------------------------------------------------------------------- French to English

def test_segond_verses_lose_their_numbering_markers_and_brackets():
    assert sqlite_bible.clean_verse("(9:1) Au chef des chantres. Sur [Meurs pour le fils]. (9:2) Je louerai") == \
        "Au chef des chantres. Sur Meurs pour le fils. Je louerai"
    assert sqlite_bible.clean_verse("God`s  Spirit was  [there]") == "God's Spirit was there"


def test_bible_fr_en_holds_whole_books_out_and_no_markers():
    a = load("bible-fr-en")
    assert np.bincount(a["split"]).tolist() == [28454, 875, 974]       # 30,303 of the 31,102 verses aligned
    books = {code: {sword.BOOKS[b] for b in a["book"][a["split"] == code]} for code in (text.TRAIN, text.VALID, text.TEST)}
    assert books[text.TEST] == set(text.BIBLE_TEST_BOOKS) and books[text.VALID] == set(text.BIBLE_VALID_BOOKS)
    assert not books[text.TRAIN] & (books[text.TEST] | books[text.VALID])
    train_pairs = sqlite_bible.verse_pairs("bible-fr-en", "train")
    assert train_pairs[0] == ("Au commencement, Dieu créa les cieux et la terre.",
                              "In the beginning God created the heavens and the earth.")
    everything = train_pairs + sqlite_bible.verse_pairs("bible-fr-en", "valid") + \
        sqlite_bible.verse_pairs("bible-fr-en", "test")
    assert not any(re.search(r"\(\d+:\d+\)|[\[\]`]", f + e) for f, e in everything)
    # Exodus 8:1 of the KJV is Segond's 7:26, marked "(7:26) " in the package
    assert ("L'Éternel dit à Moïse: Va vers Pharaon, et tu lui diras: Ainsi parle l'Éternel: Laisse aller mon "
            "peuple, afin qu'il me serve.") in {f for f, _ in train_pairs}
    # the French task trains on these, and on a user's pairs instead with data=FILE
    assert sentence_pairs({"data": "", "valid_fraction": 0.05}, "bible-fr-en")[2] == everything[-974:]


# ----------------------------------------------------------------------------- batches by length

def test_token_batches_hold_similar_lengths_cover_every_pair_once_and_depend_on_the_step_alone():
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(2, 90, (3000,), generator=g)
    rows = torch.arange(3000)
    batches = TokenBatches((rows,), sizes, 64, seed=3)
    assert batches.steps_per_epoch == 3000 // 64
    epoch = [batches.batch(s)[0] for s in range(batches.steps_per_epoch)]
    assert sorted(torch.cat(epoch).tolist()) == list(range(3000))       # every pair once an epoch
    padded = sum(len(b) * int(sizes[b].max()) for b in epoch)
    at_random = TensorBatches((rows,), 64, seed=3)
    padded_at_random = sum(64 * int(sizes[at_random.batch(s)[0]].max()) for s in range(at_random.steps_per_epoch))
    assert 1 - sizes.sum() / padded < 0.05 and 1 - sizes.sum() / padded_at_random > 0.4
    # a fresh copy asked in another order (a run resumed at step k knows nothing but k) gives the same batches
    again = TokenBatches((rows,), sizes, 64, seed=3)
    for step in (500, 3, 46, 47, 1000):
        assert torch.equal(again.batch(step)[0], batches.batch(step)[0])
    assert not torch.equal(batches.batch(0)[0], batches.batch(batches.steps_per_epoch)[0])   # epochs differ
    assert torch.equal(torch.cat([batches.batch(7, rank, 2)[0] for rank in range(2)]), batches.batch(7)[0])


def test_bucketed_translation_resumes_bitwise_exactly(tmp_path):
    tsv = digits_tsv(tmp_path / "pairs.tsv", 400)
    over = {"data": str(tsv), "model": "lstm", "width": "32", "encoder_layers": "1", "decoder_layers": "1",
            "vocab_size": "100", "max_tokens": "16", "batch_size": "16", "schedule": "constant", "warmup_steps": "0",
            "eval_every": "3", "eval_batches": "1", "eval_batch_size": "64", "precision": "32"}

    def fit(name, steps, resume=False, run=None):
        run = run or tmp_path / name
        run.mkdir(exist_ok=True)
        cfg = train.resolve_config("bible-translate", overrides={**over, "max_steps": str(steps)})
        train.fit("bible-translate", cfg, run, resume=resume, progress=False, baselines=False)
        return run

    full = fit("full", 30)                     # 30 steps: past the end of the first epoch (22 steps)
    part = fit("part", 15, resume=False)
    fit("part", 30, resume=True, run=part)
    a, b = runs.load(full, "cpu").job.model.state_dict(), runs.load(part, "cpu").job.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- decoding

class _Table:
    """A decoder whose next token depends on the last one alone: after bos, "a" (0.55) or "b" (0.45); after
    "a", "c", "b" or eos (about a third each); after "b" or "c", eos. Greedy takes "a c" (probability
    0.55 x 0.34 = 0.19); "b" alone is likelier (0.45)."""

    class cfg:
        max_len, tgt_vocab, eos_id = 6, 6, 2

    def __init__(self):
        p = torch.full((6, 6), 1e-9)
        p[1, 3], p[1, 4] = 0.55, 0.45              # bos -> a | b
        p[3, 5], p[3, 4], p[3, 2] = 0.34, 0.33, 0.33  # a -> c | b | eos
        p[4, 2] = p[5, 2] = 1.0                    # b, c -> eos
        self.logits = p.log()

    def start(self, src, copies):
        return {}, torch.ones(len(src) * copies, 1, dtype=torch.long)

    def step(self, tokens, state):
        return self.logits[tokens[:, 0]]

    def reorder(self, state, rows):
        pass


def test_beam_search_finds_a_likelier_translation_than_greedy():
    model, src = _Table(), torch.zeros(1, 3, dtype=torch.long)
    assert decoding.greedy(model, src) == [[3, 5]]
    for alpha in (0.0, 0.6):
        assert decoding.beam_search(model, src, beam=2, length_penalty=alpha) == [[4]]
    assert decoding.beam_search(model, src, beam=1) == [[3, 5]]


def test_the_lstm_learns_a_small_tsv_translates_explains_and_writes_its_translations(tmp_path):
    tsv = digits_tsv(tmp_path / "pairs.tsv")
    run = tmp_path / "run"
    pillars("train", "bible-fr-en-translate", "--max-steps", "500", "--out", str(run), "--no-progress",
            *sets(f"data={tsv}", "model=lstm", "width=64", "encoder_layers=1", "decoder_layers=1", "vocab_size=300",
                  "max_tokens=24", "eval_every=500", "precision=32", "lr=3e-3", "warmup_steps=30", "dropout=0"))
    summary = json.loads((run / "summary.json").read_text())
    final, baseline = summary["final"], summary["baselines"]
    assert final["bleu"] > 90 and final["chrf"] > 90, final
    assert baseline["copy_bleu"] < 5 and 10 < baseline["memory_bleu"] < final["bleu"] - 20, baseline
    test_pairs = sentence_pairs({"data": str(tsv), "valid_fraction": 0.05})[2]
    lines = [line.split("\t") for line in (run / "translations-test.tsv").read_text().splitlines()]
    assert [(s, r) for s, r, _ in lines] == test_pairs                  # source, reference, hypothesis, in test order
    import sacrebleu
    assert sacrebleu.corpus_bleu([h for _, _, h in lines], [[r for _, r, _ in lines]]).score == \
        pytest.approx(final["bleu"])
    out = pillars("translate", str(run), "tres uno cuatro", "nueve nueve", "--beam", "3").stdout.splitlines()
    assert out == ["three one four", "nine nine"]
    (run / "translations-test.tsv").unlink()
    beam = json.loads(pillars("evaluate", str(run), "--set", "beam=3").stdout)
    assert beam["bleu"] > 90 and (run / "translations-test.tsv").exists(), beam

    pillars("explain", str(run), "--source", "siete dos cinco ocho uno")
    assert json.loads((run / "explain.json").read_text())["translation"] == "seven two five eight one"
    assert (run / "cross_attention.png").stat().st_size > 10_000
    job = runs.load(run, "cpu").job
    src = torch.from_numpy(job.tokenizer.encode("siete dos cinco ocho uno"))[None]
    hyp = job.model.eval().greedy(src)[0]
    weights = explain.cross_attention(job.model, src, hyp)    # (1 layer, 1 head, len(hyp) + 1, source tokens)
    assert weights.shape == (1, 1, len(hyp) + 1, src.shape[1])
    assert np.allclose(weights.sum(-1), 1, atol=1e-5)


def test_the_race_reads_each_models_last_validation_bleu_within_each_mark():
    from pillars.experiments import bleu_at, leader
    curve = [(2.5, 1.0), (9.9, 4.0), (10.1, 6.0), (24.0, 9.0)]
    assert [bleu_at(curve, m) for m in (2, 10, 20, 30)] == [None, 4.0, 6.0, 9.0]
    assert leader({"lstm": 4.0, "transformer": 3.5}) == "lstm"
    assert leader({"lstm": 4.0, "transformer": 4.0}) == "tie"
    assert leader({"lstm": None, "transformer": 3.5}) == "-"


def test_translate_race_trains_both_models_and_draws_the_race_and_both_attention_maps(tmp_path):
    tsv = digits_tsv(tmp_path / "pairs.tsv", n=1500)
    out = tmp_path / "race"
    r = pillars("experiment", "translate-race", "--out", str(out),
                *sets(f"data={tsv}", "max_steps=150", "width=64", "heads=2", "encoder_layers=1", "decoder_layers=1",
                      "vocab_size=300", "max_tokens=24", "lr=3e-3", "warmup_steps=20", "dropout=0", "batch_size=32"))
    table = json.loads((out / "translate_race.json").read_text())
    for model in ("lstm", "transformer"):
        row = table["models"][model]
        valid = [x for x in runs.read_metrics(out / model) if x["split"] == "valid"]
        assert len(valid) == 10    # every 15th of the 150 steps, the last one after training
        assert np.allclose([t for t, _ in row["curve"]], [x["train_time_s"] / 60 for x in valid], atol=1e-3)
        assert row["bleu_at"] == {"10": valid[-1]["bleu"], "20": valid[-1]["bleu"], "30": valid[-1]["bleu"]}
        assert [b for _, b in row["curve"]] == [x["bleu"] for x in valid]
        assert table["attention"][model]["translation"]
    bleus = {m: table["models"][m]["bleu_at"]["30"] for m in ("lstm", "transformer")}
    assert table["leader_at"]["30"] == (max(bleus, key=bleus.get) if len(set(bleus.values())) > 1 else "tie")
    assert (out / "translate_race.png").stat().st_size > 10_000
    assert (out / "translate_race_attention.png").stat().st_size > 10_000
    assert "leads" in r.stdout and "LSTM with attention" in r.stdout and "Transformer" in r.stdout
    again = pillars("experiment", "translate-race", "--seeds", "2", "--out", str(out), check=False)
    assert again.returncode != 0 and "--seeds is not an option of translate-race" in again.stderr
    one = pillars("experiment", "translate-race", "--out", str(out), *sets("model=lstm"), check=False)
    assert one.returncode != 0 and "trains both models (lstm, transformer) itself: drop --set model" in one.stderr
