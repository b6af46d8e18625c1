"""Tokenizers that turn text into integer ids and back, saved with a run as JSON.

`CharTokenizer` is lossless: one id per character seen in training, plus <unk>. `WordTokenizer` splits
words and punctuation (optionally lower-cased), keeps the most frequent `size` of them and maps the rest to
<unk>, as word-level language models traditionally do (Mikolov et al. 2010); paragraph breaks are tokens.
`BPETokenizer` is byte-level BPE (Sennrich et al. 2016, in GPT-2's byte-level form), trained with Hugging
Face `tokenizers`: lossless, and every string has an encoding.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

UNK = "<unk>"
PAD = "<pad>"
NEWLINE = "<nl>"


class Tokenizer:
    kind = ""
    lossless = False           # decode(encode(text)) == text: bits per character can be computed exactly
    vocab: list[str]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def char_lengths(self, text: str) -> np.ndarray:
        """The characters each token of encode(text) stands for; they add up to len(text) when lossless."""
        return np.ones(len(self.encode(text)))

    def unknown(self, text: str) -> list[str]:
        """The pieces of `text` (characters, words) that encode to <unk>, each once, in order: none for a
        byte-level tokenizer, which encodes every string."""
        return []

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab}

    def save(self, path: Path) -> None:
        from pillars.config import write_text_atomic
        write_text_atomic(path, json.dumps(self.to_json(), ensure_ascii=False))


class CharTokenizer(Tokenizer):
    kind = "char"
    lossless = True

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.unk = vocab.index(UNK)
        self._codes = np.array([ord(c) if len(c) == 1 else -1 for c in vocab], dtype=np.int64)
        self._order = np.argsort(self._codes)

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls([UNK, *sorted(set(text))])

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        sorted_codes = self._codes[self._order]
        pos = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
        ids = self._order[pos]
        return np.where(sorted_codes[pos] == codes, ids, self.unk).astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] if i != self.unk else "\ufffd" for i in np.asarray(ids).tolist())

    def unknown(self, text: str) -> list[str]:
        return list(dict.fromkeys(c for c, i in zip(text, self.encode(text).tolist()) if i == self.unk))


class WordTokenizer(Tokenizer):
    kind = "word"
    pattern = re.compile(r"\n\s*\n|[A-Za-z0-9]+(?:['’][A-Za-z]+)?|[^\sA-Za-z0-9]")
    _no_space_before = set(".,;:!?)]}%'\"")
    _no_space_after = set("([{$")

    def __init__(self, vocab: list[str], lowercase: bool = True):
        self.vocab, self.lowercase = vocab, lowercase
        self.index = {w: i for i, w in enumerate(vocab)}
        self.unk = self.index[UNK]

    def words(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return [NEWLINE if m[0] == "\n" else m for m in self.pattern.findall(text)]

    @classmethod
    def train(cls, text: str, size: int = 10000, lowercase: bool = True,
              specials: tuple[str, ...] = (UNK,)) -> "WordTokenizer":
        """The `size` most frequent words of `text`, after `specials` (a classifier puts <pad> first, as id 0)."""
        counts = Counter(cls([UNK], lowercase).words(text))
        common = [w for w, _ in counts.most_common(size) if w not in specials][:size - len(specials)]
        return cls([*specials, *common], lowercase)

    def encode(self, text: str) -> np.ndarray:
        get, unk = self.index.get, self.unk
        return np.array([get(w, unk) for w in self.words(text)], dtype=np.int64)

    def unknown(self, text: str) -> list[str]:
        return list(dict.fromkeys(w for w in self.words(text) if w not in self.index))

    def decode(self, ids) -> str:
        out = []
        for i in np.asarray(ids).tolist():
            w = self.vocab[i]
            if w == PAD:
                continue
            if w == NEWLINE:
                out.append("\n\n")
            elif out and not out[-1].endswith(("\n", *self._no_space_after)) and w not in self._no_space_before:
                out.append(" " + w)
            else:
                out.append(w)
        return "".join(out)

    def to_json(self) -> dict:
        return {**super().to_json(), "lowercase": self.lowercase}


class BPETokenizer(Tokenizer):
    kind = "bpe"
    lossless = True

    def __init__(self, hf):
        self.hf = hf
        self.vocab = [hf.id_to_token(i) for i in range(hf.get_vocab_size())]

    @classmethod
    def train(cls, texts: list[str], size: int = 8000, specials: tuple[str, ...] = (PAD, UNK)) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(specials), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.hf.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in np.asarray(ids).tolist()], skip_special_tokens=True)

    def char_lengths(self, text: str) -> np.ndarray:
        # the byte-level pieces of one multi-byte character share its offsets: count it once, at its first piece
        offsets = np.array(self.hf.encode(text).offsets, dtype=np.int64).reshape(-1, 2)
        covered = np.maximum.accumulate(offsets[:, 1])
        before = np.concatenate([[0], covered[:-1]])
        return np.maximum(offsets[:, 1] - np.maximum(offsets[:, 0], before), 0).astype(np.float64)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}


def from_json(spec: dict) -> Tokenizer:
    if spec.get("kind") == "bpe":
        from tokenizers import Tokenizer as HFTokenizer
        return BPETokenizer(HFTokenizer.from_str(json.dumps(spec["tokenizer"])))
    if spec.get("kind") == "char":
        return CharTokenizer(spec["vocab"])
    if spec.get("kind") == "word":
        return WordTokenizer(spec["vocab"], spec.get("lowercase", True))
    raise ValueError(f"unknown tokenizer kind {spec.get('kind')!r}")


def load(path: Path) -> Tokenizer:
    """A run's saved tokenizer.json; a damaged one is an InputFileError that names it."""
    from pillars.data.registry import InputFileError
    try:
        return from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except Exception as e:   # not JSON, not UTF-8, or a vocabulary that the tokenizers library refuses
        raise InputFileError(f"{path} is damaged ({type(e).__name__}: {e}); pillars train writes it beside the "
                             "weights: the vocabulary the run was trained with. Restore it, or delete it to "
                             "have it rebuilt from the training text (the same text the run was trained on)") \
            from None
