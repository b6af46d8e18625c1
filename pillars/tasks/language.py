"""Language models: next-token prediction on a corpus or a user's text file, beside an n-gram baseline.

A corpus has its own train / valid / test split (sotu: by year; brown: by file; bible-web: by book). A
user's file is cut at its end: the last `val_fraction` of the text is the test text and the `val_fraction`
before it the validation text. The n-gram baseline's order is chosen on the validation text.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import explain, metrics
from pillars.baselines import KneserNey, cached_baselines
from pillars.config import ConfigError, check_multiple, note, write_text_atomic
from pillars.data.registry import InputFileError
from pillars.data.text import corpus_splits, read_user_text
from pillars.data.batches import TokenWindows, scored_windows
from pillars.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer
from pillars.models import rnn, transformer
from pillars.tasks import Family, Job, LoadedRun, SampleRequest, Task, check_choice, register


@dataclass
class LanguageJob(Job):
    test_text: str = ""                      # the held-out text `explain` reads (the LSTM's cells)
    test_ids: torch.Tensor | None = None     # its tokens as one stream (memory span, attention distance)


def generate_texts(model: nn.Module, tok: Tokenizer, prompt: str, n: int = 1, length: int = 400,
                   temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """`n` continuations of `prompt` (each including it), sampled with a seeded generator."""
    device = next(model.parameters()).device
    ids = torch.from_numpy(tok.encode(prompt)).to(device)
    if len(ids) == 0:
        raise ConfigError(f"the prompt {prompt!r} has no tokens the model knows")
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.eval().generate(ids[None].expand(n, -1), length, temperature, top_k, generator=g, top_p=top_p)
    return [tok.decode(row) for row in out.cpu()]


@dataclass
class TextOptions:
    data: str = ""               # a UTF-8 text file of your own instead of the task's corpus
    val_fraction: float = 0.1    # with data=FILE: the last fraction of the text is the test text, the one
    #                              before it the validation text
    tokenizer: str = "char"      # char or bpe (lossless: bits per character), or word
    vocab_size: int = 10000      # word: the most frequent words kept, the rest <unk>; bpe: the merged vocabulary
    context: int = 128           # tokens per training window (truncated backpropagation through time)
    ngram: bool = True           # the Kneser-Ney n-gram baseline on the same split, at the end
    ngram_order: int = 0         # its order; 0: the one (2 to 9) that best predicts the validation text

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        """Before any text is read: the tokenizer, and a word vocabulary with a word in it beside <unk> (a
        vocabulary of <unk> alone predicts every token with certainty: perplexity 1.0, and nothing learned)."""
        check_choice(cfg, "tokenizer", ("char", "bpe", "word"))
        if cfg["tokenizer"] == "word" and cfg["vocab_size"] < 2:
            raise ConfigError(f"vocab_size must be at least 2 with tokenizer=word, not {cfg['vocab_size']}: the "
                              "vocabulary is <unk> and the most frequent words, so at least one word beside <unk>; "
                              "thousands are typical (--set vocab_size=10000)")


@dataclass
class RecurrentLMOptions(TextOptions):
    cell: str = "lstm"           # lstm, or rnn (tanh) for comparison
    embed: int = 256             # embedding width, shared with the output layer
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    fused: bool = True           # the library kernel; false runs the equations in Python (same weights)

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        super().check(cfg, task)
        check_choice(cfg, "cell", ("lstm", "rnn"))


def text_splits(cfg: dict, corpus: str) -> tuple[str, str, str]:
    """(training, validation, test text): the corpus's own split, or the user's file cut at its end."""
    if not cfg["data"]:
        splits = corpus_splits(corpus)
        return splits["train"], splits["valid"], splits["test"]
    path = Path(cfg["data"]).expanduser()
    if not path.exists():
        raise ConfigError(f"--set data={cfg['data']}: no such file; give a UTF-8 text file (a run trained on it "
                          "needs it back in that place to be evaluated or explained)")
    text = read_user_text(path)
    if not 0 < cfg["val_fraction"] < 0.5:
        raise ConfigError(f"val_fraction must be between 0 and 0.5 (the end of the text is held out twice: the "
                          f"test text, and the validation text before it), not {cfg['val_fraction']}")
    if not text.strip():
        raise InputFileError(f"{path} holds no text; give a UTF-8 text file to learn from")
    held_out, context = int(len(text) * cfg["val_fraction"]), cfg.get("context", 0)
    if held_out <= context:   # a token is at least a character: each held-out part needs context + 1 of them
        raise InputFileError(f"{path} has {len(text):,} characters: its held-out parts (val_fraction "
                             f"{cfg['val_fraction']} for validation, as much for test) get {held_out:,} each, not "
                             f"more than the context of {context}; give a text of at least "
                             f"{math.ceil((context + 1) / cfg['val_fraction']):,} characters, or lower "
                             "--set context")
    test_from = int(len(text) * (1 - cfg["val_fraction"]))
    valid_from = int(len(text) * (1 - 2 * cfg["val_fraction"]))
    return text[:valid_from], text[valid_from:test_from], text[test_from:]


def make_tokenizer(cfg: dict, train_text: str) -> Tokenizer:
    if cfg["tokenizer"] == "char":
        return CharTokenizer.train(train_text)
    if cfg["tokenizer"] == "word":
        return WordTokenizer.train(train_text, cfg["vocab_size"])
    if cfg["tokenizer"] == "bpe":
        return BPETokenizer.train([train_text], cfg["vocab_size"])
    raise ConfigError(f"tokenizer must be char, word or bpe, not {cfg['tokenizer']!r}")


def ngram_orders(cfg: dict, vocab_size: int) -> list[int]:
    """The Kneser-Ney orders to try: the one asked for, or 2 to 9 (those whose n-gram keys fit 64 bits)."""
    try:
        orders = ([cfg["ngram_order"]] if cfg["ngram_order"] > 0
                  else [k for k in range(2, 10) if vocab_size ** k < 2 ** 62])
        KneserNey(max(orders), vocab_size)
    except ValueError as e:
        raise ConfigError(f"--set ngram_order={cfg['ngram_order']}: {e}; lower it, or 0 to choose it on the "
                          "validation text, or --set ngram=false") from None
    return orders


def language_model_job(cfg: dict, device: torch.device, corpus: str, make_model) -> LanguageJob:
    train_text, valid_text, test_text = text_splits(cfg, corpus)
    tok = make_tokenizer(cfg, train_text)
    orders = ngram_orders(cfg, len(tok))
    train_ids, valid_ids, test_ids = (tok.encode(t) for t in (train_text, valid_text, test_text))
    distinct = np.unique(train_ids)
    if len(distinct) < 2:   # every next token is certain: a perplexity of 1 that says nothing
        source = f"--set data={cfg['data']}" if cfg.get("data") else f"the training text of {corpus}"
        raise InputFileError(f"{source} holds one distinct token ({tok.decode(distinct.tolist())!r}, tokenizer "
                             f"{cfg['tokenizer']}): a language model has nothing to learn; give a text with more "
                             "than one")
    test_chars = tok.char_lengths(test_text)

    def held_out(ids: np.ndarray, chars: np.ndarray) -> tuple[torch.Tensor, ...]:
        # each target weighs the characters it spells: bits per character
        windows = scored_windows(torch.from_numpy(ids), torch.from_numpy(chars).float(), cfg["context"])
        return tuple(t.to(device) for t in windows)

    valid, test = held_out(valid_ids, tok.char_lengths(valid_text)), held_out(test_ids, test_chars)
    model = make_model(cfg, len(tok))

    def loss(model, batch):
        x, y = batch
        return F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten())

    def eval_sums(model, batch):
        x, y, w = batch
        return metrics.language_model_sums(model(x)[0], y, w)

    def summary(sums):
        result = metrics.language_model_summary(sums)
        if not tok.lossless:
            del result["bits_per_char"]
        return result

    def baselines():
        if not cfg["ngram"]:
            return {}
        return cached_baselines("ngram", lambda: ngram_baselines(train_ids, valid_ids, test_ids, test_chars, orders, tok),
                                train_ids, valid_text, test_ids, test_chars, orders, tok.to_json())

    return LanguageJob(model=model, train=TokenWindows(torch.from_numpy(train_ids).to(device), cfg["context"],
                                                       cfg["batch_size"], cfg["seed"]),
                       valid=valid, test=test, loss=loss, eval_sums=eval_sums, summary=summary, tokenizer=tok,
                       baselines=baselines, tokens_per_sample=cfg["context"], test_text=test_text,
                       test_ids=torch.from_numpy(test_ids))


def ngram_baselines(train_ids: np.ndarray, valid_ids: np.ndarray, test_ids: np.ndarray, chars: np.ndarray,
                    orders: list[int], tok: Tokenizer) -> dict[str, float]:
    """Kneser-Ney of the order (among `orders`) that predicts the validation text best, fitted without it,
    and the unigram floor, both on the test text."""
    kn = KneserNey(max(orders), len(tok)).fit(train_ids)
    order = orders[0]
    if len(orders) > 1:
        best = None
        for k in orders:
            loss = -kn.log_probs(valid_ids, k).mean()
            if best is not None and loss >= best:
                break   # past the best order the counts get too sparse and the loss rises again
            best, order = loss, k
    nll = -kn.log_probs(test_ids, order)
    result = {"kneser_ney_order": order, "kneser_ney_perplexity": float(np.exp(nll.mean()))}
    if tok.lossless:
        result["kneser_ney_bits_per_char"] = float(nll.sum() / np.log(2) / chars[1:].sum())
    # the floor of the scale: each token by its training frequency alone (add-one smoothed), no context
    counts = np.bincount(train_ids, minlength=len(tok)) + 1.0
    unigram = -np.log(counts / counts.sum())[test_ids[1:]]
    result["unigram_perplexity"] = float(np.exp(unigram.mean()))
    if tok.lossless:
        result["unigram_bits_per_char"] = float(unigram.sum() / np.log(2) / chars[1:].sum())
    return result


# ----------------------------------------------------------------------------- the family

class LanguageModel(Family):
    """Language models (LSTM or GPT): bits per character or perplexity beside Kneser-Ney, sampled text, and
    the explain figures (memory span; an LSTM's readable cells; a GPT's attention distance and KV cache)."""

    what = "language model"
    # the Kneser-Ney name takes its order; a run shows bits per character where its tokenizer is lossless,
    # else perplexity
    baseline_names = {"kneser_ney_bits_per_char": ("Kneser-Ney {order}-gram", "{:.3f} bits/char"),
                      "kneser_ney_perplexity": ("Kneser-Ney {order}-gram", "perplexity {:.1f}"),
                      "unigram_bits_per_char": ("character frequencies alone", "{:.3f} bits/char"),
                      "unigram_perplexity": ("word frequencies alone", "perplexity {:.1f}")}
    chance_keys = frozenset({"unigram_bits_per_char", "unigram_perplexity"})
    # an LSTM writes cells.png, a GPT attention_distance.png and kv_cache.png: the report shows those written
    report_figures = ("curves.png", "memory_span.png", "cells.png", "attention_distance.png", "kv_cache.png")

    def __init__(self, make_model: Callable[[dict, int], nn.Module] | None = None):
        self.make_model = make_model   # the network from the configuration and the vocabulary's size

    def saved_job(self, run_dir: Path, cfg: dict, device: torch.device) -> LanguageJob | None:
        """Sampling needs the network and its vocabulary, not the text: a run whose own text file (--set
        data=FILE) has moved is rebuilt from its tokenizer.json, with a note. None when the text is there
        (the task rebuilds the run from it, and checks the vocabulary) or no vocabulary was saved."""
        found = None if self.make_model is None else self.moved_data_vocabulary(run_dir, cfg)
        if found is None:
            return None
        saved, tok = found
        note(f"{cfg['data']}, the text {run_dir} was trained on, is no longer there: sampling with the vocabulary "
             f"the run saved ({saved}); evaluate and explain need the text back in its place")
        return LanguageJob(model=self.make_model(cfg, len(tok)), train=None, valid=(), test=(), loss=None,
                           eval_sums=None, summary=None, tokenizer=tok)

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        return f"{f['bits_per_char']:.3f} bits/char" if "bits_per_char" in f else f"perplexity {f['perplexity']:.1f}"

    def baselines_text(self, summary: dict, which: str = "all") -> str:
        b = summary.get("baselines", {})
        unit = "bits_per_char" if "kneser_ney_bits_per_char" in b or "unigram_bits_per_char" in b else "perplexity"
        order = f"{b['kneser_ney_order']:.0f}" if "kneser_ney_order" in b else "n"
        shown = Family()
        shown.baseline_names = {key: (name.format(order=order), fmt)
                                for key, (name, fmt) in self.baseline_names.items() if key.endswith(unit)}
        shown.chance_keys = self.chance_keys
        return shown.baselines_text(summary, which)

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        summary = run.run_dir / "summary.json"
        baselines = json.loads(summary.read_text()).get("baselines", {}) if summary.exists() else {}
        result = explain.explain_language_model(run.run_dir, run.job, baselines, log=log,
                                                **({"positions": 512, "cell_chars": 5000} if light else {}))
        log(f"wrote {run.run_dir / 'memory_span.png'}: test loss ({result['memory_span_unit']}) with k tokens "
            "of history")
        log("  " + "  ".join(f"k={k}: {v:.3f}" for k, v in result["memory_span"].items()))
        if "attention_distance" in result:
            log(f"wrote {run.run_dir / 'attention_distance.png'}: mean distance attended, per layer (heads)")
            for i, layer in enumerate(result["attention_distance"]):
                log(f"  layer {i + 1}: " + " ".join(f"{d:6.1f}" for d in layer))
            kv = result["kv_cache_seconds"]
            log(f"wrote {run.run_dir / 'kv_cache.png'}: {kv['tokens'][-1]} tokens in {kv['KV cache'][-1]:.2f} s "
                f"with the KV cache, {kv['recomputing'][-1]:.2f} s recomputing "
                f"({kv['recomputing'][-1] / kv['KV cache'][-1]:.1f}x)")
        if "cells" in result:
            log(f"wrote {run.run_dir / 'cells.png'}: the cells that best track")
            for name, c in result["cells"].items():
                log(f"  {name:<38} cell {c['cell']:>4}  correlation {c['correlation']:+.2f}")
        return result

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        return {"explain": self.explain(run, log, light=light), "text": generated_text(run.job)}

    def sample(self, run: LoadedRun, request: SampleRequest, log: Callable[[str], None]) -> None:
        """`request.n` continuations of the prompt (a new paragraph when none is given), on stdout or in a file."""
        if request.out and Path(request.out).suffix.lower() in (".png", ".jpg", ".jpeg"):
            raise ConfigError(f"--out {request.out}: a language model writes text, not an image; name a text file "
                              "(e.g. sample.txt)")
        texts = self.generated_texts(run, request)
        joined = "\n\n---\n\n".join(t.strip("\n") for t in texts) + "\n"
        if request.out:
            write_text_atomic(Path(request.out), joined)
            log(f"wrote {len(texts)} sample(s) to {request.out}")
        else:
            print(joined, end="")

    def generated_texts(self, run: LoadedRun, request: SampleRequest) -> list[str]:
        """`request.n` continuations of the prompt (a new paragraph when none is given), each including it:
        what `sample` shows, for the Python API."""
        if request.class_name:
            raise ConfigError("--class is for GAN runs (fashion-cdcgan); a language model takes --prompt")
        n = 1 if request.n is None else request.n
        if request.length < 1 or n < 1 or request.top_k < 0 or not 0 <= request.top_p <= 1:
            raise ConfigError("--length and --n must be at least 1, --top-k at least 0, --top-p between 0 and 1")
        unknown_tokens(run, request.prompt)
        return generate_texts(run.job.model, run.job.tokenizer, request.prompt or "\n\n", n, request.length,
                              request.temperature, request.top_k, request.top_p, request.seed)

    def graph(self, run: LoadedRun):
        """The network as exported: token ids (batch, length) -> next-token logits (batch, length, vocab), the
        recurrent state or the KV cache left out; a GPT reads at most its context. The example input is the
        start of the test text."""
        from pillars.export import Graph
        model, tok = run.job.model, run.job.tokenizer
        text = run.job.test_text or "The Congress"   # a run rebuilt without its text (`saved_job`): the tour's prompt
        ids = torch.from_numpy(tok.encode(text)[:16]).long().to(run.device)
        if len(ids) < 2:   # the exporter fixes a length of 1 as a constant
            raise ConfigError(f"the text {text[:40]!r} has fewer than 2 tokens of {run.run_dir}'s vocabulary to "
                              "trace the network with")
        context = getattr(model.cfg, "context", None)   # a GPT's; an LSTM reads any length
        return Graph(TokenLogits(model), {"tokens": ids[None].expand(2, -1).contiguous()},
                     {"tokens": {0: "batch", 1: ("length", context)}}, ["logits"])


class TokenLogits(nn.Module):
    """A language model's forward without its recurrent state or KV cache: token ids -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)[0]


def unknown_tokens(run: LoadedRun, prompt: str) -> None:
    """A note on stderr naming what of the prompt the run's vocabulary lacks and became <unk>: a prompt is
    not refused for it (the model continues from the rest), but is not changed silently either."""
    tok = run.job.tokenizer
    unknown = tok.unknown(prompt)
    if not unknown:
        return
    what = "words" if tok.kind == "word" else "characters"
    shown = ", ".join(map(repr, unknown[:20])) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
    became = "<unk> (printed as \ufffd), which the model never saw in training" if tok.kind == "char" else "<unk>"
    known = "those of its training text" if tok.kind == "char" else "the most frequent of its training text"
    note(f"the prompt's {what} {shown} {'is' if len(unknown) == 1 else 'are'} not in the vocabulary of {run.run_dir} "
         f"({len(tok) - 1:,} {what}, {known}): each became {became}")


def generated_text(job: LanguageJob, prompt: str = "The Congress", length: int = 400, seed: int = 0) -> dict:
    """The tour's sample: `length` tokens after `prompt` at temperature 0.8, top-p 0.95."""
    text = generate_texts(job.model, job.tokenizer, prompt, 1, length, 0.8, 0, 0.95, seed)[0]
    return {"prompt": prompt, "temperature": 0.8, "top_p": 0.95, "text": text}


def recurrent_lm(cfg: dict, vocab_size: int) -> nn.Module:
    check_choice(cfg, "cell", ("lstm", "rnn"))
    return rnn.LanguageModel(rnn.LanguageModelConfig(
        vocab_size=vocab_size, embed=cfg["embed"], hidden=cfg["hidden"], layers=cfg["layers"],
        dropout=cfg["dropout"], cell=cfg["cell"], fused=cfg["fused"]))


LANGUAGE_MODEL = LanguageModel(recurrent_lm)


register(Task(
    name="sotu-char-lstm",
    description="a character-level LSTM language model on the State of the Union addresses; the test set is "
                "the latest speeches",
    dataset="sotu", model="LSTM language model (2 x 256, tied embeddings)", objective="next-character cross-entropy",
    metric="bits_per_char", options=RecurrentLMOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", recurrent_lm), family=LANGUAGE_MODEL,
    defaults={"max_steps": 3000, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 1000, "eval_batches": 0, "eval_batch_size": 128,
              "precision": "auto", "context": 128},
))

register(Task(
    name="sotu-lstm",
    description="a word-level LSTM language model on the State of the Union addresses (10k-word vocabulary); "
                "the test set is the latest speeches",
    dataset="sotu", model="LSTM language model (2 x 256, tied embeddings)", objective="next-word cross-entropy",
    metric="perplexity", options=RecurrentLMOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", recurrent_lm), family=LANGUAGE_MODEL,
    defaults={"max_steps": 1200, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 400, "eval_batches": 0, "eval_batch_size": 128,
              "precision": "auto", "tokenizer": "word", "context": 64, "dropout": 0.3},
))


@dataclass
class GPTOptions(TextOptions):
    layers: int = 4
    heads: int = 4
    width: int = 256
    dropout: float = 0.1
    fused: bool = True           # attention through scaled_dot_product_attention; false: the explicit softmax

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        super().check(cfg, task)
        check_multiple(cfg, "width", "heads", "each head reads width / heads channels")


def gpt(cfg: dict, vocab_size: int) -> nn.Module:
    return transformer.GPT(transformer.GPTConfig(
        vocab_size=vocab_size, context=cfg["context"], layers=cfg["layers"], heads=cfg["heads"], width=cfg["width"],
        dropout=cfg["dropout"], fused=cfg["fused"]))


GPT_MODEL = LanguageModel(gpt)


register(Task(
    name="sotu-char-gpt",
    description="a character-level GPT on the State of the Union addresses, on the same split as sotu-char-lstm",
    dataset="sotu", model="GPT (4 layers, 4 heads, 256 wide, context 256)", objective="next-character cross-entropy",
    metric="bits_per_char", options=GPTOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", gpt), family=GPT_MODEL,
    defaults={"max_steps": 600, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 60,
              "grad_clip": 1.0, "eval_every": 200, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "auto", "context": 256, "betas": "0.9,0.95"},
))

register(Task(
    name="sotu-gpt",
    description="a word-level GPT on the State of the Union addresses, on the same split as sotu-lstm",
    dataset="sotu", model="GPT (4 layers, 4 heads, 256 wide, context 128)", objective="next-word cross-entropy",
    metric="perplexity", options=GPTOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", gpt), family=GPT_MODEL,
    defaults={"max_steps": 1200, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 400, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "auto", "tokenizer": "word", "context": 128, "dropout": 0.2,
              "betas": "0.9,0.95"},
))


@dataclass
class TextFileOptions(GPTOptions):
    model: str = "gpt"           # gpt, or lstm (then embed, hidden and layers shape it; cell lstm or rnn)
    cell: str = "lstm"
    embed: int = 256
    hidden: int = 256

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "model", ("gpt", "lstm"))
        check_choice(cfg, "cell", ("lstm", "rnn"))
        if cfg["model"] == "gpt":   # an LSTM has no heads
            super().check(cfg, task)
        else:
            TextOptions.check(cfg, task)


def text_file_model(cfg: dict, vocab_size: int) -> nn.Module:
    check_choice(cfg, "model", ("gpt", "lstm"))
    return gpt(cfg, vocab_size) if cfg["model"] == "gpt" else recurrent_lm(cfg, vocab_size)


def build_text_file(cfg: dict, device: torch.device) -> LanguageJob:
    if not cfg["data"]:
        raise ConfigError("text-file trains on your own text: give it with --set data=FILE (UTF-8); for example "
                          "`pillars data export sotu sotu.txt` writes the State of the Union addresses as one file")
    return language_model_job(cfg, device, "", text_file_model)


register(Task(
    name="text-file",
    description="a language model on any UTF-8 text file (--set data=FILE): a GPT, or an LSTM with "
                "--set model=lstm; the end of the file is held out (the last val_fraction to test, the one "
                "before it to validation)",
    dataset="your file", model="GPT (4 layers, 4 heads, 256 wide) or LSTM", objective="next-token cross-entropy",
    metric="bits_per_char", options=TextFileOptions, higher_is_better=False, build=build_text_file,
    family=LanguageModel(text_file_model),
    defaults={"max_steps": 600, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 60,
              "grad_clip": 1.0, "eval_every": 200, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "auto", "context": 256, "betas": "0.9,0.95"},
))
