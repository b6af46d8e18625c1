"""Pretraining for language (Devlin et al. 2019): a Transformer encoder learns from unlabelled text by
filling in hidden tokens, then reads movie reviews with few labels.

  text-mlm                   masked-language-model pretraining on the training text of three corpora (the
                             State of the Union addresses, the Brown corpus, the English Bible): 128-token
                             chunks, 15% of the tokens chosen, 80/10/10 masked / random / kept
                             (`transformer.bert_masking`); metric: accuracy on the chosen tokens of the
                             corpora's held-out text (masked at fixed positions), beside the unigram baseline.
  movie-sentiment-transfer   the movie-review snippets classified by the same encoder through its [CLS]
                             token, from the text-mlm weights (--set pretrained=false: the same network, tokens
                             and recipe from random weights), on `labelled` training snippets (0: all 8,454).

The pretrained encoder is a required run (`Requirement`): trained once with text-mlm's defaults into
$PILLARS_HOME/models/text-mlm by the run lifecycle, then reused. Its byte-level BPE tokenizer (trained on
the three corpora, not on the reviews) serves every arm of the comparison, so they differ in their starting
weights alone. `--set encoder=text-mlm-reviews` starts from that encoder adapted to the domain first
(ULMFiT's second stage, Howard & Ruder 2018; "task-adaptive pretraining", Gururangan et al. 2020): text-mlm
continued, weights and tokenizer, on the text of the training snippets (`corpora=movie-reviews`,
`start=text-mlm`: every training snippet, the neutral ones too, no label read; the validation and test
snippets' text is its held-out text), trained once into $PILLARS_HOME/models/text-mlm-reviews.
`pillars experiment text-transfer` draws accuracy against the number of labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pillars import data, metrics
from pillars.config import ConfigError
from pillars.data.batches import TensorBatches
from pillars.data.text import corpus_splits
from pillars.data.tokenizers import PAD, UNK, BPETokenizer
from pillars.models import transformer
from pillars.tasks import Family, Job, LoadedRun, Requirement, SampleRequest, Task, check_choice, register
from pillars.tasks.sequences import SentimentClassifier, padded, padded_loss, padded_sums

MASK = "<mask>"
SPECIALS = (PAD, UNK, MASK)          # ids 0, 1, 2: never chosen for prediction nor drawn as a random token
CORPORA = ("sotu", "brown", "bible-web")
IN_DOMAIN = "movie-reviews"          # the snippets' text, every snippet of each split (neutral too), no label
EVAL_MASK_SEED = 1234                # the held-out chunks are masked once, at the same positions for every run


@dataclass
class MLMOptions:
    data: str = ""               # a UTF-8 text file of your own instead of the three corpora
    val_fraction: float = 0.1    # with data=FILE: the last fraction is the test text, the one before it validation
    vocab_size: int = 8000       # byte-level BPE merged on the corpora's training text
    context: int = 128           # tokens a chunk
    width: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0         # a small network on millions of tokens does not overfit; dropout slows it
    mask_rate: float = 0.15      # share of the tokens chosen for prediction
    corpora: str = ",".join(CORPORA)   # the text, comma-separated: of sotu, brown, bible-web, movie-reviews
    start: str = ""              # "text-mlm": continue the pretrained text-mlm (its weights and tokenizer) on
    #                              this text, as ULMFiT and Gururangan et al. (2020) adapt a model to a domain

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        if not 0 < cfg["mask_rate"] < 1:
            raise ConfigError(f"mask_rate must be between 0 and 1 (BERT's is 0.15), not {cfg['mask_rate']}")
        if cfg["start"] not in ("", "text-mlm"):
            raise ConfigError(f"start must be text-mlm (continue the pretrained text-mlm) or empty (random weights), "
                              f"not {cfg['start']!r}")
        known = (*CORPORA, IN_DOMAIN)
        names = corpus_names(cfg)
        unknown = [c for c in names if c not in known]
        if unknown or not names:
            raise ConfigError(f"corpora {cfg['corpora']!r}: name one or more of {', '.join(known)}, comma-separated"
                              + (f" ({', '.join(unknown)} is not one)" if unknown else ""))
        if cfg["data"] and cfg["corpora"] != ",".join(CORPORA):
            raise ConfigError("data=FILE is the text instead of the corpora: drop --set corpora")
        if cfg["start"] and any(cfg[k] != v for k, v in pretrained_shape().items() if k in SHAPE_KEYS):
            raise ConfigError(f"start=text-mlm continues text-mlm's network, so its shape ({', '.join(SHAPE_KEYS)}) "
                              "is text-mlm's: drop those --set keys")


def corpus_names(cfg: dict) -> list[str]:
    return [c.strip() for c in cfg["corpora"].split(",") if c.strip()]


def encoder_config(cfg: dict, vocab: int, num_classes: int = 2, pool: str = "cls") -> transformer.EncoderClassifierConfig:
    return transformer.EncoderClassifierConfig(vocab_size=vocab, num_classes=num_classes, width=cfg["width"],
                                               heads=cfg["heads"], layers=cfg["layers"], max_len=cfg["context"] + 1,
                                               dropout=cfg["dropout"], pool=pool)


def corpus_tokenizer(texts: list[str], vocab_size: int) -> BPETokenizer:
    return BPETokenizer.train(texts, vocab_size, specials=SPECIALS)


def chunks(tok: BPETokenizer, text: str, context: int) -> torch.Tensor:
    """A text's tokens (encoded a line at a time, in parallel) cut into rows of `context` tokens, the last,
    shorter piece dropped."""
    lines = text.splitlines(keepends=True)
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in tok.hf.encode_batch(lines)] or [np.zeros(0, int)])
    n = len(ids) // context
    return torch.from_numpy(ids[:n * context].reshape(n, context))


def corpus_texts(cfg: dict) -> list[dict[str, str]]:
    """The train / valid / test text of each corpus: the corpora's own splits (the movie-review snippets', their
    labels unread), or the user's file cut at its end (as the language models cut it)."""
    if cfg["data"]:
        from pillars.tasks.language import text_splits
        return [dict(zip(("train", "valid", "test"), text_splits(cfg, "")))]
    from pillars.data.text import movie_review_text
    return [{s: movie_review_text(s) for s in ("train", "valid", "test")} if name == IN_DOMAIN else corpus_splits(name)
            for name in corpus_names(cfg)]


def build_mlm(cfg: dict, device: torch.device, needs: dict) -> Job:
    """`start` "": a tokenizer learnt on the training text and a network from random weights; "text-mlm": the
    pretrained text-mlm's tokenizer and every weight (encoder and output layer), trained on."""
    from pillars.weights import load_weights, weights_path
    splits = corpus_texts(cfg)
    if cfg["start"]:   # the required text-mlm, trained first; read from its files (its job would re-read the corpora)
        folder = mlm_requirement().folder
        tok = pretrained_tokenizer(folder, "the text-mlm that start=text-mlm continues",
                                   "pillars train text-mlm --set start=text-mlm")
    else:   # the tokenizer learns its merges from the training text only, a line at a time
        tok = corpus_tokenizer([line for s in splits for line in s["train"].splitlines()], cfg["vocab_size"])
    mask_id, first = tok.vocab.index(MASK), len(SPECIALS)
    rows = {split: torch.cat([chunks(tok, s[split], cfg["context"]) for s in splits])
            for split in ("train", "valid", "test")}
    for split, x in rows.items():
        if len(x) < (cfg["batch_size"] if split == "train" else 1):
            source = f"--set data={cfg['data']}" if cfg["data"] else "the corpora"
            raise ConfigError(f"{source}: the {split} text makes {len(x)} chunks of {cfg['context']} tokens; give a "
                              "longer text, or lower --set context (or --batch-size)")
    full = lambda x: torch.full((len(x),), cfg["context"], dtype=torch.long)   # noqa: E731 (every chunk is full)

    def held_out(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Chunks masked once with a fixed seed: (corrupted ids, lengths, targets with -100 where not chosen)."""
        corrupted, where, _ = transformer.bert_masking(x, full(x), mask_id, len(tok), first, cfg["mask_rate"],
                                                       torch.Generator().manual_seed(EVAL_MASK_SEED))
        targets = torch.where(where, x, torch.full_like(x, -100))
        return tuple(t.to(device) for t in (corrupted, full(x), targets))

    model = transformer.MaskedLanguageModel(encoder_config(cfg, len(tok)))
    if cfg["start"]:
        load_weights(model, weights_path(folder))
    counts = np.bincount(rows["train"].flatten().numpy(), minlength=len(tok)).astype(np.float64)

    def loss(model, batch):
        x, lengths = batch
        corrupted, where, targets = transformer.bert_masking(x, lengths, mask_id, len(tok), first, cfg["mask_rate"])
        return F.cross_entropy(model(corrupted, lengths, where).float(), targets)

    def eval_sums(model, batch):
        x, lengths, targets = batch
        where = targets >= 0
        return metrics.classification_sums(model(x, lengths, where), targets[where])

    def summary(sums):
        out = metrics.classification_summary(sums)
        return {"masked_loss": out["loss"], "masked_accuracy": out["accuracy"]}

    def baselines():
        """The unigram model of the training tokens on the same chosen test tokens: what a model that
        reads no context scores."""
        targets = rows_test_targets[rows_test_targets >= 0].numpy()
        p = (counts + 1) / (counts.sum() + len(counts))
        return {"unigram_masked_loss": float(-np.log(p[targets]).mean()),
                "unigram_masked_accuracy": float(np.mean(targets == int(np.argmax(counts))))}

    valid, test = held_out(rows["valid"]), held_out(rows["test"])
    rows_test_targets = test[2].cpu()
    return Job(model=model, train=TensorBatches((rows["train"].to(device), full(rows["train"]).to(device)),
                                                cfg["batch_size"], cfg["seed"]),
               valid=valid, test=test, loss=loss, eval_sums=eval_sums, summary=summary, tokenizer=tok,
               baselines=baselines, tokens_per_sample=cfg["context"])


class MaskedLM(Family):
    """A masked language model: its headline is the held-out masked-token accuracy; `pillars sample` fills
    the <mask> tokens of a prompt."""

    what = "masked language model"
    baseline_names = {"unigram_masked_accuracy": ("unigram (the commonest token)", "{:.2%}")}
    chance_keys = frozenset({"unigram_masked_accuracy"})

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        return f"{100 * f['masked_accuracy']:.2f}% of masked tokens, loss {f['masked_loss']:.3f} nats"

    def tour(self, run: LoadedRun, log: Callable[[str], None], light: bool = False) -> dict:
        return {}

    def saved_job(self, run_dir: Path, cfg: dict, device: torch.device) -> Job | None:
        """Filling masks needs the network and its vocabulary (tokenizer.json), not the corpora."""
        from pillars.data import tokenizers
        saved = Path(run_dir) / "tokenizer.json"
        if not saved.exists():
            return None
        tok = tokenizers.load(saved)
        return Job(model=transformer.MaskedLanguageModel(encoder_config(cfg, len(tok))), train=None, valid=(),
                   test=(), loss=None, eval_sums=None, summary=None, tokenizer=tok)

    def sample(self, run: LoadedRun, request: SampleRequest, log: Callable[[str], None]) -> None:
        """The five likeliest tokens for each <mask> of `request.prompt`."""
        for position, guesses in fill_masks(run, request.prompt or f"The {MASK} of the United States.", 5):
            log(f"<mask> {position + 1}: " + "  ".join(f"{piece!r} {p:.1%}" for piece, p in guesses))


@torch.no_grad()
def fill_masks(run: LoadedRun, prompt: str, k: int = 5) -> list[tuple[int, list[tuple[str, float]]]]:
    """For each <mask> of `prompt` in order: (its index among them, the k likeliest tokens with probabilities)."""
    tok, model = run.job.tokenizer, run.job.model.eval()
    mask_id = tok.vocab.index(MASK)
    pieces = prompt.split(MASK)
    if len(pieces) < 2:
        raise ConfigError(f"the prompt {prompt!r} has no {MASK}: write {MASK} where a token is to be guessed, "
                          f"e.g. --prompt \"The {MASK} of the United States.\"")
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        ids += tok.encode(piece).tolist() + ([mask_id] if i < len(pieces) - 1 else [])
    ids = ids[:model.cfg.max_len - 1]
    x = torch.tensor([ids], device=run.device)
    probs = model(x, torch.tensor([len(ids)], device=run.device))[0].float().softmax(-1)
    out = []
    for n, pos in enumerate(i for i, t in enumerate(ids) if t == mask_id):
        p, top = probs[pos].topk(k)
        out.append((n, [(tok.decode([t]), float(q)) for t, q in zip(top.tolist(), p.tolist())]))
    return out


register(Task(
    name="text-mlm",
    description="BERT-style pretraining: a Transformer encoder fills in masked tokens of the State of the Union "
                "addresses, the Brown corpus and the English Bible (--set corpora=..., data=FILE, start=text-mlm)",
    dataset="sotu + brown + bible-web", model="Transformer encoder (2 layers, 128 wide) with BERT's output layer",
    objective="cross-entropy on the chosen tokens (15%: 80% masked, 10% random, 10% kept)",
    metric="masked_accuracy", options=MLMOptions, build=build_mlm, family=MaskedLM(),
    defaults={"epochs": 3.0, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 200,
              "grad_clip": 1.0, "eval_batch_size": 256, "eval_every": 500, "eval_batches": 8, "log_every": 50},
    requires=lambda cfg: {"start": mlm_requirement()} if cfg["start"] else {},
))


# ----------------------------------------------------------------------------- fine-tuning on the reviews

TRANSFER_TASK = "movie-sentiment-transfer"
MLM_RECIPE: dict = {}   # text-mlm's own defaults: the pretrained encoder every transfer run starts from
# text-mlm continued on the training snippets' text (no label read): the in-domain encoder
IN_DOMAIN_RECIPE: dict = {"corpora": IN_DOMAIN, "start": "text-mlm", "epochs": 20.0, "lr": 5e-4, "warmup_steps": 50,
                          "eval_every": 100}
SHAPE_KEYS = ("vocab_size", "context", "width", "heads", "layers")   # what a continued text-mlm keeps


def mlm_dir() -> Path:
    return data.home() / "models" / "text-mlm"


def in_domain_dir() -> Path:
    return data.home() / "models" / "text-mlm-reviews"


def mlm_requirement() -> Requirement:
    return Requirement("text-mlm", MLM_RECIPE, mlm_dir())


def encoder_requirement(encoder: str) -> Requirement:
    """The encoder a fine-tuning run starts from: text-mlm, or text-mlm continued on the reviews' text."""
    if encoder == "text-mlm":
        return mlm_requirement()
    shape = {k: v for k, v in MLM_RECIPE.items() if k in SHAPE_KEYS}   # text-mlm's, which it continues
    return Requirement("text-mlm", {**shape, **IN_DOMAIN_RECIPE}, in_domain_dir())


@dataclass
class SentimentTransferOptions:
    pretrained: bool = True      # start from text-mlm's weights (false: the same network from random weights)
    labelled: int = 0            # labelled training snippets, half of each class, drawn with the seed; 0: all
    dropout: float = 0.1
    pool: str = "cls"            # what the classifier reads: the [CLS] output, or the mean of the tokens' outputs
    #                              (validation at 300 labels: 62.6% against 60.8% for mean, pretrained)
    encoder: str = "text-mlm"    # the pretrained weights: text-mlm, or text-mlm-reviews (text-mlm continued on the
    #                              snippets' own text, no label read); both have text-mlm's tokenizer

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        check_choice(cfg, "pool", ("mean", "cls"))
        check_choice(cfg, "encoder", ("text-mlm", "text-mlm-reviews"))
        if cfg["encoder"] != "text-mlm" and not cfg["pretrained"]:
            raise ConfigError("encoder chooses the pretrained weights, and pretrained=false starts from random ones: "
                              "drop --set encoder")
        if cfg["labelled"] < 0 or cfg["labelled"] % 2:
            raise ConfigError(f"labelled must be an even number of snippets (half of each class), or 0 for all "
                              f"of them, not {cfg['labelled']}")


def pretrained_tokenizer(folder: Path, what: str, command: str):
    """The tokenizer of the finished text-mlm in `folder` (`what` it is to the caller); a ConfigError naming the
    `command` that trains it when it is missing or unfinished."""
    from pillars.data import tokenizers
    if not (folder / "tokenizer.json").exists() or not (folder / "model.safetensors").exists():
        raise ConfigError(f"{folder}, {what}, is missing or unfinished: `{command}` trains it first")
    return tokenizers.load(folder / "tokenizer.json")


def pretrained_shape() -> dict:
    from pillars import train
    return train.resolve_config("text-mlm", overrides={k: str(v) for k, v in MLM_RECIPE.items()})


def build_sentiment_transfer(cfg: dict, device: torch.device, needs: dict) -> Job:
    """The snippets' own train / valid / test split; `labelled` of the training snippets (half of each class)
    are the labelled set; the validation and test snippets are all there."""
    from pillars.data import text
    from pillars.tasks.images import few_labels
    from pillars.weights import load_tensors, weights_path
    shape = pretrained_shape()
    folder = encoder_requirement(cfg["encoder"]).folder
    tok = pretrained_tokenizer(folder, f"the pretrained encoder (text-mlm) whose tokens every run of {TRANSFER_TASK} "
                                       "reads", f"pillars train {TRANSFER_TASK}")
    model = transformer.EncoderClassifier(encoder_config({**shape, "dropout": cfg["dropout"]}, len(tok),
                                                         pool=cfg["pool"]))
    if cfg["pretrained"]:
        state, _ = load_tensors(weights_path(folder))
        body = transformer.encoder_state(model)
        missing = set(body) - set(state)
        if missing:
            raise ConfigError(f"{folder} holds no encoder weights for {sorted(missing)[:3]}: delete that folder and "
                              "it is trained again")
        model.load_state_dict({k: state[k] for k in body}, strict=False)

    def on_device(texts: list[str], labels: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device) for t in (*padded(tok, texts, shape["context"]), torch.from_numpy(labels)))

    full_train, full_y = text.movie_reviews("train")
    train_texts, train_y = full_train, full_y
    if cfg["labelled"]:
        if cfg["labelled"] > len(train_y):
            raise ConfigError(f"labelled={cfg['labelled']}, but there are {len(train_y):,} training snippets")
        keep = few_labels(torch.from_numpy(train_y), cfg["labelled"] // 2, cfg["seed"]).numpy()
        train_texts, train_y = [train_texts[i] for i in keep], train_y[keep]
    test_texts, test_y = text.movie_reviews("test")

    def baselines():
        from pillars.baselines import majority_accuracy, tfidf_logistic_regression
        out = {"tfidf_logreg_accuracy": float(np.mean(tfidf_logistic_regression(full_train, full_y, test_texts)
                                                      == test_y)),
               "majority_accuracy": majority_accuracy(full_y, test_y)}
        if cfg["labelled"]:   # the same baseline with the same few labels
            out["tfidf_logreg_same_labels_accuracy"] = float(np.mean(
                tfidf_logistic_regression(train_texts, train_y, test_texts) == test_y))
        return out

    return Job(model=model, train=TensorBatches(on_device(train_texts, train_y), cfg["batch_size"], cfg["seed"]),
               valid=on_device(*text.movie_reviews("valid")), test=on_device(test_texts, test_y), loss=padded_loss,
               eval_sums=padded_sums, summary=metrics.classification_summary, tokenizer=tok, baselines=baselines)


class SentimentTransfer(SentimentClassifier):
    """Fine-tuned sentiment classifiers: beside TF-IDF + logistic regression on the same few labels and on all."""

    baseline_names = {"tfidf_logreg_same_labels_accuracy": ("TF-IDF + logistic regression on the same labels",
                                                            "{:.2%}"),
                      "tfidf_logreg_accuracy": ("TF-IDF + logistic regression on all labels", "{:.2%}"),
                      "majority_accuracy": ("majority class", "{:.2%}")}


register(Task(
    name=TRANSFER_TASK,
    description="the movie-review snippets read by the text-mlm encoder, fine-tuned on `labelled` of them "
                "(--set pretrained=false: the same network from random weights)",
    dataset="movie-reviews + text-mlm", model="Transformer encoder (2 layers, 128 wide), [CLS] pooled",
    objective="cross-entropy", metric="accuracy", options=SentimentTransferOptions, build=build_sentiment_transfer,
    family=SentimentTransfer(), requires=lambda cfg: {"encoder": encoder_requirement(cfg["encoder"])},
    defaults={"epochs": 6.0, "batch_size": 32, "lr": 3e-4, "weight_decay": 1e-2, "warmup_steps": 50,
              "grad_clip": 1.0, "eval_batch_size": 512, "log_every": 50},
))
