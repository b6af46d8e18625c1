"""Translation: an encoder-decoder Transformer or LSTM with attention, from Spanish or French to English (or
between the sentences of a user's TSV), scored with sacreBLEU and chrF.

Two tasks, one per Bible pair, share this recipe: `bible-translate` (Spanish, bible-es-en) and
`bible-fr-en-translate` (French, bible-fr-en). A task per pair, rather than an option, keeps each task's
dataset in the task table (`pillars list`, the data it fetches) and each trained run naming its language pair.
`--set model=lstm|transformer` picks the network; `--set data=pairs.tsv` replaces the Bible by the user's pairs.
Every evaluation of the test set writes the run's translations-test.tsv: source, reference and hypothesis,
one pair a line in test order, so anyone can score it again with the sacrebleu command line. The baselines on
the same test pairs: a translation memory (the translation of the most similar training sentence) and the
source copied unchanged."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pillars import explain, metrics
from pillars.config import ConfigError, Range, check_multiple, note, unknown_name_message
from pillars.data import sqlite_bible, text
from pillars.data.batches import TensorBatches, TokenBatches
from pillars.data.tokenizers import PAD, BPETokenizer
from pillars.models import rnn, transformer
from pillars.tasks import Family, Job, LoadedRun, Task, register

BOS, EOS = "<bos>", "<eos>"   # ids 1 and 2, after <pad> = 0
SPLIT_SEED = 0   # a user's TSV is split by this seed, not the run's: every run of a file shares one split


@dataclass
class TranslationJob(Job):
    example_source: str = ""     # a held-out source sentence whose cross-attention `explain` plots
    samples: list[tuple[str, str]] = field(default_factory=list)   # held-out pairs the tour translates


MODELS = ("transformer", "lstm")


@dataclass
class TranslationOptions:
    model: str = "transformer"   # transformer: Vaswani et al. (2017); lstm: a bidirectional LSTM encoder and an
    #                              LSTM decoder with attention (Luong et al. 2015)
    data: str = ""               # a TSV of your own sentence pairs (source TAB target) instead of the Bibles
    valid_fraction: float = 0.05  # with data=FILE: the pairs held out at random (fixed seed) for the test set,
    #                               and as many again for validation
    vocab_size: int = 8000       # one byte-level BPE vocabulary for both languages, shared embeddings
    max_tokens: int = 96         # training pairs with a longer side are left out; held-out sources are cut
    buckets: bool = True         # batches of pairs of similar length, each about batch_size x the mean pair's
    #                              tokens (fairseq's --max-tokens); false: batch_size pairs drawn at random
    width: int = 256             # the Transformer's width; the LSTMs' embedding and hidden size
    heads: int = 4               # the Transformer's attention heads
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    label_smoothing: float = 0.1  # as in Vaswani et al. (2017)
    beam: int = 1                # decoding for evaluation: 1 greedy, more: beam search
    length_penalty: float = 0.6  # GNMT's alpha for beam search

    ranges = {"valid_fraction": Range(0, 0.5, "()", "with data=FILE it is held out twice: for the test set and "
                                                    "for validation")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        if cfg["model"] not in MODELS:
            raise ConfigError(unknown_name_message("model", cfg["model"], MODELS))
        if cfg["model"] == "transformer":
            check_multiple(cfg, "width", "heads", "each head reads width / heads channels")
        elif cfg["width"] % 2:
            raise ConfigError(f"width must be even for model=lstm (each direction of its encoder has half of it), "
                              f"not {cfg['width']}")


def sentence_pairs(cfg: dict, dataset: str = "bible-es-en") -> tuple[text.Pairs, text.Pairs, text.Pairs]:
    """(training, validation, test pairs): the Bibles' split by whole books, or the user's TSV split at random
    with a fixed seed (the same for every run)."""
    if cfg["data"]:
        if not 0 < cfg["valid_fraction"] < 0.5:
            raise ConfigError(f"valid_fraction must be between 0 and 0.5 (it is held out twice: for the test set "
                              f"and for validation), not {cfg['valid_fraction']}")
        try:
            return text.load_tsv_pairs(cfg["data"], cfg["valid_fraction"], SPLIT_SEED)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return tuple(sqlite_bible.verse_pairs(dataset, split) for split in ("train", "valid", "test"))


def padded(rows: list[np.ndarray], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.from_numpy(r[:width])
    return out


def trimmed(x: torch.Tensor) -> torch.Tensor:
    """A padded batch cut to its longest row, so a batch of short sentences costs little."""
    return x[:, :max(1, int((x != 0).sum(1).max()))]


@torch.no_grad()
def decode(model, src: torch.Tensor, beam: int, length_penalty: float) -> list:
    """Output token ids for a padded source batch: beam search with `beam` > 1, greedy with 1."""
    return model.beam_search(src, beam, length_penalty=length_penalty) if beam > 1 else model.greedy(src)


def translate(model, tok, sentences: list[str], cfg: dict, beam: int,
              warn: Callable[[str], None] | None = None) -> list[str]:
    """Sentences in, translations out, as `pillars translate` and the tour's report show them. A sentence
    longer than the model reads (max_tokens) is cut to it, and `warn` says which and where."""
    device = next(model.parameters()).device
    encoded = [tok.encode(s) for s in sentences]
    if warn is not None:
        say_cut(tok, {f"sentence {i}": ids for i, ids in enumerate(encoded, 1)}, cfg["max_tokens"],
                "max_tokens, the longest source it trained on", warn)
    src = trimmed(padded(encoded, cfg["max_tokens"])).to(device)
    return [tok.decode(ids) for ids in decode(model.eval(), src, beam, cfg["length_penalty"])]


def say_cut(tok, encoded: dict[str, np.ndarray], most: int, why: str, warn: Callable[[str], None]) -> None:
    """Name each sentence (name -> its tokens) longer than the `most` tokens the model reads, and where it is
    cut."""
    for name, ids in encoded.items():
        if len(ids) > most:
            kept_end = " ".join(tok.decode(ids[:most]).split()[-4:])
            warn(f"{name} has {len(ids)} tokens, more than the {most} the model reads ({why}): only its first "
                 f"{most} tokens, up to {kept_end!r}, are translated; split it into shorter sentences")


def network(cfg: dict, vocab: int) -> torch.nn.Module:
    """The encoder-decoder `cfg["model"]` names, over one shared vocabulary (ids: pad 0, bos 1, eos 2)."""
    L = cfg["max_tokens"]
    if cfg["model"] == "lstm":
        return rnn.Seq2SeqLSTM(rnn.Seq2SeqLSTMConfig(
            src_vocab=vocab, tgt_vocab=vocab, embed=cfg["width"], hidden=cfg["width"],
            encoder_layers=cfg["encoder_layers"], decoder_layers=cfg["decoder_layers"], dropout=cfg["dropout"],
            max_len=L + 2, share_embeddings=True))
    return transformer.Seq2SeqTransformer(transformer.Seq2SeqConfig(
        src_vocab=vocab, tgt_vocab=vocab, width=cfg["width"], heads=cfg["heads"],
        encoder_layers=cfg["encoder_layers"], decoder_layers=cfg["decoder_layers"], dropout=cfg["dropout"],
        max_len=L + 2, pad_id=0, bos_id=1, eos_id=2, share_embeddings=True))


def translations_tsv(pairs: text.Pairs, hypotheses: list[str]) -> str:
    """Source, reference and hypothesis, tab-separated, one pair a line."""
    return "".join(f"{s}\t{r}\t{h}\n" for (s, r), h in zip(pairs, hypotheses))


MEMORY_PAIRS = 300_000   # above this many training pairs the translation memory is left out (minutes, GBs)


def translation_baselines(train_pairs: text.Pairs, test_pairs: text.Pairs) -> dict[str, float]:
    """BLEU and chrF on the same test pairs of a translation memory (the English of the most similar training
    source) and of the source copied unchanged (what no learning scores: names and cognates), computed once
    per split and cached. Both read whole sources, and the memory every training pair, where the model reads
    at most max_tokens of each: a difference in the baselines' favour. The memory is left out, with a note,
    above MEMORY_PAIRS training pairs or for sources without a word it can index."""
    import sacrebleu

    from pillars.baselines import cached_baselines, translation_memory

    def compute() -> dict[str, float]:
        sources, references = [s for s, _ in test_pairs], [t for _, t in test_pairs]
        runs = [("copy", sources)]
        if len(train_pairs) > MEMORY_PAIRS:
            note(f"the translation-memory baseline is left out: {len(train_pairs):,} training pairs, more than "
                 f"the {MEMORY_PAIRS:,} it indexes in reasonable time and memory")
        else:
            try:
                runs.append(("memory", translation_memory([s for s, _ in train_pairs], [t for _, t in train_pairs],
                                                          sources)))
            except ValueError as e:   # scikit-learn: "empty vocabulary", no source has a word
                note(f"the translation-memory baseline is left out: {e}")
        return {f"{name}_{key}": value for name, hypotheses in runs
                for key, value in metrics.corpus_bleu_chrf(hypotheses, references).items()}
    # in the cache's key
    method = ("tfidf words 1-2 sublinear, unspaced chars 1-3", MEMORY_PAIRS, sacrebleu.__version__)
    return cached_baselines("translation", compute, train_pairs, test_pairs, method)


def build_translation(cfg: dict, device: torch.device, dataset: str = "bible-es-en") -> TranslationJob:
    train_pairs, valid_pairs, test_pairs = sentence_pairs(cfg, dataset)
    tok = BPETokenizer.train([s for pair in train_pairs for s in pair], cfg["vocab_size"], specials=(PAD, BOS, EOS))
    bos, eos, L = 1, 2, cfg["max_tokens"]

    def encode_pairs(pairs, keep_long: bool):
        src = [tok.encode(s) for s, _ in pairs]
        tgt = [np.concatenate([[bos], tok.encode(t), [eos]]) for _, t in pairs]
        keep = [i for i in range(len(pairs)) if keep_long or (len(src[i]) <= L and len(tgt[i]) <= L + 2)]
        return padded([src[i] for i in keep], L), padded([tgt[i] for i in keep], L + 2)

    # the held-out sets name each sentence by its index in `references`: validation first, then test
    references = [t for _, t in valid_pairs + test_pairs]

    def held_out(pairs, first: int) -> tuple[torch.Tensor, ...]:
        src, tgt = encode_pairs(pairs, keep_long=True)
        return src.to(device), tgt.to(device), torch.arange(first, first + len(pairs), device=device)

    model = network(cfg, len(tok))

    def teacher_forced(model, src, tgt):
        src, tgt = trimmed(src), trimmed(tgt)
        return model(src, tgt[:, :-1]).float(), tgt[:, 1:]

    def loss(model, batch):
        logits, target = teacher_forced(model, *batch)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0,
                               label_smoothing=cfg["label_smoothing"])

    def eval_sums(model, batch):
        src, tgt, index = batch
        logits, target = teacher_forced(model, src, tgt)
        hypotheses = decode(model, trimmed(src), cfg["beam"], cfg["length_penalty"])   # at most L + 2 tokens
        return {**metrics.token_sums(logits, target, pad=0),
                **metrics.translation_sums(hypotheses, index, len(references), L + 2)}

    def summary(sums):   # the beam is part of the figures: BLEU and chrF depend on it
        return {**metrics.token_summary(sums), **metrics.translation_summary(sums, references, tok.decode),
                "beam": cfg["beam"]}

    def outputs(split: str, sums: dict) -> dict[str, str]:
        """translations-test.tsv after an evaluation of the whole test set."""
        first = len(valid_pairs)
        count = np.asarray(sums["hyp_count"])[first:]
        if split != "test" or not (count > 0).all():
            return {}
        table = np.rint(np.asarray(sums["hyp_ids"])[first:] / count[:, None]).astype(np.int64)
        return {"translations-test.tsv": translations_tsv(test_pairs, [tok.decode(r[r > 0] - 1) for r in table])}

    train_src, train_tgt = encode_pairs(train_pairs, keep_long=False)
    if len(train_src) < len(train_pairs):   # a pair longer than max_tokens would be cut mid-sentence: left out
        kept = f"{len(train_pairs) - len(train_src):,} of the {len(train_pairs):,} training pairs are longer than " \
               f"max_tokens={L} BPE tokens on a side"
        if len(train_src) == 0:
            raise ConfigError(f"{kept}: none is left to train on; raise --set max_tokens or split the pairs into "
                              "sentences")
        note(f"note: {kept} and are left out of training (the held-out pairs are all kept); --set max_tokens "
             "keeps more, at more memory and time a step")
    src_len, tgt_len = (train_src != 0).sum(1), (train_tgt != 0).sum(1) - 1   # tgt: bos is read, eos predicted
    tensors = (train_src.to(device), train_tgt.to(device))
    train = (TokenBatches(tensors, torch.maximum(src_len, tgt_len), cfg["batch_size"], cfg["seed"]) if cfg["buckets"]
             else TensorBatches(tensors, cfg["batch_size"], cfg["seed"]))
    example = next((s for s, _ in test_pairs if 12 <= len(s.split()) <= 24), test_pairs[0][0])
    samples = [p for p in test_pairs if 8 <= len(p[0].split()) <= 20][:5] or test_pairs[:5]   # for the tour's report
    return TranslationJob(
        model=model, train=train, valid=held_out(valid_pairs, 0), test=held_out(test_pairs, len(valid_pairs)),
        loss=loss, eval_sums=eval_sums, summary=summary, outputs=outputs, tokenizer=tok,
        baselines=lambda: translation_baselines(train_pairs, test_pairs),
        tokens_per_sample=round(float((src_len + tgt_len).float().mean())), example_source=example, samples=samples)


def translations(job: TranslationJob, cfg: dict, n: int = 5, beam: int = 4) -> list[dict]:
    """The tour's table: `n` held-out pairs with the model's translation (beam search) beside the reference."""
    pairs = job.samples[:n]
    if not pairs:
        return []
    outputs = translate(job.model, job.tokenizer, [s for s, _ in pairs], cfg, beam)
    return [{"source": s, "reference": r, "output": o} for (s, r), o in zip(pairs, outputs)]


class TranslationFamily(Family):
    """Sequence-to-sequence translation: BLEU and chrF, `pillars translate`, the decoder's cross-attention."""

    what = "translation model"
    baseline_names = {"memory_bleu": ("translation memory BLEU", "{:.1f}"),
                      "memory_chrf": ("translation memory chrF", "{:.1f}"),
                      "copy_bleu": ("source copied unchanged BLEU", "{:.1f}"),
                      "copy_chrf": ("source copied unchanged chrF", "{:.1f}")}
    chance_keys = frozenset({"copy_bleu", "copy_chrf"})
    report_figures = ("curves.png", "cross_attention.png")
    explains_a_source = True

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        beam = f.get("beam", summary.get("beam", 1))
        return f"BLEU {f['bleu']:.1f}, chrF {f['chrf']:.1f} ({'beam' if beam > 1 else 'greedy'})"

    def saved_job(self, run_dir: Path, cfg: dict, device: torch.device) -> TranslationJob | None:
        """Translating needs the network and its vocabulary, not the pairs: a run whose own TSV (--set
        data=FILE) has moved is rebuilt from its tokenizer.json, with a note. None when the TSV is there (the
        task rebuilds the run from it) or no vocabulary was saved."""
        found = self.moved_data_vocabulary(run_dir, cfg)
        if found is None:
            return None
        saved, tok = found
        note(f"{cfg['data']}, the pairs {run_dir} was trained on, are no longer there: translating with the "
             f"vocabulary the run saved ({saved}); evaluate and explain need the pairs back in their place")
        return TranslationJob(model=network(cfg, len(tok)), train=None, valid=(), test=(), loss=None, eval_sums=None,
                              summary=None, tokenizer=tok)

    def translate(self, run: LoadedRun, sentences: list[str], beam: int) -> list[str]:
        if beam < 1:
            raise ConfigError("--beam must be at least 1 (1: greedy)")
        return translate(run.job.model, run.job.tokenizer, sentences, run.cfg, beam, warn=note)

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        if source:   # explain_translation reads as many tokens as the model has positions
            say_cut(run.job.tokenizer, {"--source": run.job.tokenizer.encode(source)}, run.cfg["max_tokens"] + 2,
                    "its positions, max_tokens + 2", note)
        result = explain.explain_translation(run.run_dir, run.job, source, log=log)
        log(f"wrote {run.run_dir / result['cross_attention']}: which source tokens each output token read")
        return result

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        return {"explain": self.explain(run, log, light=light), "translations": translations(run.job, run.cfg)}


DEFAULTS = {"max_steps": 1500, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 200,
            "grad_clip": 1.0, "eval_every": 500, "eval_batches": 4, "eval_batch_size": 128, "precision": "auto",
            "betas": "0.9,0.98"}
# French to English on a 2-core CPU: the attention LSTM, 2 + 2 layers, which learns fastest per minute there
# (equal-time probes on the validation books, benchmarks/results.md), for about 30 minutes of training
FR_EN_DEFAULTS = {**DEFAULTS, "model": "lstm", "encoder_layers": 2, "decoder_layers": 2, "lr": 3e-3,
                  "warmup_steps": 100, "max_steps": 1600}
# the Transformer at the same 2 + 2 layers and width, for about 30 minutes of training there: `--set
# model=transformer --set lr=1e-3 --max-steps 1500` (the translate-race's other runner and the full tour's; lr
# 1e-3 read validation BLEU 3.8 after 23 minutes where 2e-3 read 1.4: the README's translate-race rows)
FR_EN_TRANSFORMER = {"model": "transformer", "lr": 1e-3, "max_steps": 1500}
MODEL_TEXT = ("Transformer (3 + 3 layers, 256 wide) or, with model=lstm, a bidirectional LSTM encoder and an LSTM "
              "decoder with attention; shared BPE embeddings")
FR_EN_MODEL_TEXT = ("a bidirectional LSTM encoder and an LSTM decoder with attention (2 + 2 layers, 256 wide) or, with "
                    "model=transformer, a Transformer of the same size; shared BPE embeddings")

register(Task(
    name="bible-translate",
    description="Spanish to English: the Reina-Valera 1909 and the World English Bible, whole books held out "
                "(--set model=lstm|transformer; --set data=pairs.tsv for your own pairs)",
    dataset="bible-es-en", model=MODEL_TEXT,
    objective="cross-entropy, label smoothing 0.1", metric="bleu", options=TranslationOptions,
    build=build_translation, family=TranslationFamily(), defaults=DEFAULTS,
))

register(Task(
    name="bible-fr-en-translate",
    description="French to English: the Louis Segond 1910 and the World English Bible, whole books held out "
                "(--set model=lstm|transformer; --set data=pairs.tsv for your own pairs)",
    dataset="bible-fr-en", model=FR_EN_MODEL_TEXT,
    objective="cross-entropy, label smoothing 0.1", metric="bleu", options=TranslationOptions,
    build=functools.partial(build_translation, dataset="bible-fr-en"), family=TranslationFamily(),
    defaults=FR_EN_DEFAULTS,
))
