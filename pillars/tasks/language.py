"""Language models: next-token prediction on a corpus or a user's text file, beside an n-gram baseline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars import metrics
from pillars.data.text import corpus_splits
from pillars.data.batches import TokenWindows, scored_windows
from pillars.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer
from pillars.models import rnn, transformer
from pillars.tasks import Job, Task, check_choice, register


def generate_texts(model: nn.Module, tok: Tokenizer, prompt: str, n: int = 1, length: int = 400,
                   temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """`n` continuations of `prompt` (each including it), sampled with a seeded generator."""
    from pillars.config import ConfigError
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
    val_fraction: float = 0.1    # with data=FILE: the last fraction of the text is the held-out set
    tokenizer: str = "char"      # char or bpe (lossless: bits per character), or word
    vocab_size: int = 10000      # word: the most frequent words kept, the rest <unk>; bpe: the merged vocabulary
    context: int = 128           # tokens per training window (truncated backpropagation through time)
    ngram: bool = True           # the Kneser-Ney n-gram baseline on the same split, at the end
    ngram_order: int = 0         # its order; 0: the one (2 to 9) that best predicts the validation text


@dataclass
class RecurrentLMOptions(TextOptions):
    cell: str = "lstm"           # lstm, or rnn (tanh) for comparison
    embed: int = 256             # embedding width, shared with the output layer
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    fused: bool = True           # the library kernel; false runs the equations in Python (same weights)


def text_splits(cfg: dict, corpus: str) -> tuple[str, str, str]:
    """(training, validation, test text): the corpus's own split, or the user's file cut at its end (with no
    validation text: the n-gram baseline then picks its order on the end of the training text)."""
    from pillars.config import ConfigError
    if cfg["data"]:
        from pathlib import Path
        path = Path(cfg["data"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"--set data={cfg['data']}: no such file; give a UTF-8 text file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path} is not UTF-8 text ({e}); convert it, e.g. with iconv -t utf-8") from None
        if not 0 < cfg["val_fraction"] < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, not {cfg['val_fraction']}")
        cut = int(len(text) * (1 - cfg["val_fraction"]))
        return text[:cut], "", text[cut:]
    splits = corpus_splits(corpus)
    return splits["train"], splits["valid"], splits["test"]


def make_tokenizer(cfg: dict, train_text: str) -> Tokenizer:
    from pillars.config import ConfigError
    if cfg["tokenizer"] == "char":
        return CharTokenizer.train(train_text)
    if cfg["tokenizer"] == "word":
        return WordTokenizer.train(train_text, cfg["vocab_size"])
    if cfg["tokenizer"] == "bpe":
        return BPETokenizer.train([train_text], cfg["vocab_size"])
    raise ConfigError(f"tokenizer must be char, word or bpe, not {cfg['tokenizer']!r}")


def language_model_job(cfg: dict, device: torch.device, corpus: str, make_model) -> Job:
    from pillars.baselines import KneserNey
    train_text, valid_text, test_text = text_splits(cfg, corpus)
    tok = make_tokenizer(cfg, train_text)
    try:
        orders = ([cfg["ngram_order"]] if cfg["ngram_order"] > 0
                  else [k for k in range(2, 10) if len(tok) ** k < 2 ** 62])
        KneserNey(max(orders), len(tok))
    except ValueError as e:
        from pillars.config import ConfigError
        raise ConfigError(f"--set ngram_order={cfg['ngram_order']}: {e}; lower it, or 0 to choose it on the "
                          "validation text, or --set ngram=false") from None
    train_ids, test_ids = tok.encode(train_text), tok.encode(test_text)
    chars = tok.char_lengths(test_text)   # each target weighs the characters it spells: bits per character
    test = scored_windows(torch.from_numpy(test_ids), torch.from_numpy(chars).float(), cfg["context"])
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
        return cached_baselines(ngram_baselines, train_ids, valid_text, test_ids, chars, orders, tok.to_json())

    def ngram_baselines():
        order = orders[0]
        if len(orders) > 1:   # the order that predicts the validation text best, fitted without it
            fit_ids, valid_ids = ((train_ids, tok.encode(valid_text)) if valid_text
                                  else (train_ids[:len(train_ids) * 9 // 10], train_ids[len(train_ids) * 9 // 10:]))
            best = None
            for k in orders:
                loss = -KneserNey(k, len(tok)).fit(fit_ids).log_probs(valid_ids).mean()
                if best is not None and loss >= best:
                    break   # past the best order the counts get too sparse and the loss rises again
                best, order = loss, k
        nll = -KneserNey(order, len(tok)).fit(train_ids).log_probs(test_ids)
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

    return Job(model=model, train=TokenWindows(torch.from_numpy(train_ids).to(device), cfg["context"],
                                               cfg["batch_size"], cfg["seed"]),
               test=tuple(t.to(device) for t in test), loss=loss, eval_sums=eval_sums, summary=summary,
               tokenizer=tok, baselines=baselines, tokens_per_sample=cfg["context"],
               info={"test_text": test_text, "test_ids": torch.from_numpy(test_ids)})


def cached_baselines(compute, *inputs) -> dict:
    """The n-gram baselines depend only on the token streams, the orders tried and the tokenizer: they are
    computed once (a minute for characters) and kept under $PILLARS_HOME/baselines, keyed by a hash of all
    of those, so runs on the same split (an LSTM and a GPT, a rerun) share them."""
    import hashlib
    import json

    from pillars import data
    from pillars.config import write_text_atomic
    h = hashlib.sha256()
    for x in inputs:
        h.update(x.tobytes() if isinstance(x, np.ndarray) else repr(x).encode())
    path = data.home() / "baselines" / f"ngram-{h.hexdigest()[:24]}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result) + "\n")
    return result


def recurrent_lm(cfg: dict, vocab_size: int) -> nn.Module:
    check_choice(cfg, "cell", ("lstm", "rnn"))
    return rnn.LanguageModel(rnn.LanguageModelConfig(
        vocab_size=vocab_size, embed=cfg["embed"], hidden=cfg["hidden"], layers=cfg["layers"],
        dropout=cfg["dropout"], cell=cfg["cell"], fused=cfg["fused"]))


register(Task(
    name="sotu-char-lstm",
    description="a character-level LSTM language model on the State of the Union addresses; the test set is "
                "the latest speeches",
    dataset="sotu", model="LSTM language model (2 x 256, tied embeddings)", objective="next-character cross-entropy",
    metric="bits_per_char", options=RecurrentLMOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", recurrent_lm),
    defaults={"max_steps": 3000, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 1000, "eval_batches": 0, "eval_batch_size": 128,
              "precision": "bf16", "context": 128},
))

register(Task(
    name="sotu-lstm",
    description="a word-level LSTM language model on the State of the Union addresses (10k-word vocabulary); "
                "the test set is the latest speeches",
    dataset="sotu", model="LSTM language model (2 x 256, tied embeddings)", objective="next-word cross-entropy",
    metric="perplexity", options=RecurrentLMOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", recurrent_lm),
    defaults={"max_steps": 1200, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 400, "eval_batches": 0, "eval_batch_size": 128,
              "precision": "bf16", "tokenizer": "word", "context": 64, "dropout": 0.3},
))


@dataclass
class GPTOptions(TextOptions):
    layers: int = 4
    heads: int = 4
    width: int = 256
    dropout: float = 0.1
    fused: bool = True           # attention through scaled_dot_product_attention; false: the explicit softmax


def gpt(cfg: dict, vocab_size: int) -> nn.Module:
    return transformer.GPT(transformer.GPTConfig(
        vocab_size=vocab_size, context=cfg["context"], layers=cfg["layers"], heads=cfg["heads"], width=cfg["width"],
        dropout=cfg["dropout"], fused=cfg["fused"]))


register(Task(
    name="sotu-char-gpt",
    description="a character-level GPT on the State of the Union addresses, on the same split as sotu-char-lstm",
    dataset="sotu", model="GPT (4 layers, 4 heads, 256 wide, context 256)", objective="next-character cross-entropy",
    metric="bits_per_char", options=GPTOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", gpt),
    defaults={"max_steps": 600, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 60,
              "grad_clip": 1.0, "eval_every": 200, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "bf16", "context": 256, "betas": "0.9,0.95"},
))

register(Task(
    name="sotu-gpt",
    description="a word-level GPT on the State of the Union addresses, on the same split as sotu-lstm",
    dataset="sotu", model="GPT (4 layers, 4 heads, 256 wide, context 128)", objective="next-word cross-entropy",
    metric="perplexity", options=GPTOptions, higher_is_better=False,
    build=lambda cfg, device: language_model_job(cfg, device, "sotu", gpt),
    defaults={"max_steps": 1200, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 100,
              "grad_clip": 1.0, "eval_every": 400, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "bf16", "tokenizer": "word", "context": 128, "dropout": 0.2,
              "betas": "0.9,0.95"},
))


@dataclass
class TextFileOptions(GPTOptions):
    model: str = "gpt"           # gpt, or lstm (then embed, hidden and layers shape it; cell lstm or rnn)
    cell: str = "lstm"
    embed: int = 256
    hidden: int = 256


def text_file_model(cfg: dict, vocab_size: int) -> nn.Module:
    check_choice(cfg, "model", ("gpt", "lstm"))
    return gpt(cfg, vocab_size) if cfg["model"] == "gpt" else recurrent_lm(cfg, vocab_size)


def build_text_file(cfg: dict, device: torch.device) -> Job:
    if not cfg["data"]:
        from pillars.config import ConfigError
        raise ConfigError("text-file trains on your own text: give it with --set data=FILE (UTF-8); for example "
                          "`pillars data export sotu sotu.txt` writes the State of the Union addresses as one file")
    return language_model_job(cfg, device, "", text_file_model)


register(Task(
    name="text-file",
    description="a language model on any UTF-8 text file (--set data=FILE): a GPT, or an LSTM with "
                "--set model=lstm; the last val_fraction of the file is held out",
    dataset="your file", model="GPT (4 layers, 4 heads, 256 wide) or LSTM", objective="next-token cross-entropy",
    metric="bits_per_char", options=TextFileOptions, higher_is_better=False, build=build_text_file,
    defaults={"max_steps": 600, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 60,
              "grad_clip": 1.0, "eval_every": 200, "eval_batches": 0, "eval_batch_size": 64,
              "precision": "bf16", "context": 256, "betas": "0.9,0.95"},
))
