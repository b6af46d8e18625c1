"""A reader for SWORD Bible modules in the zText format (the modules Debian ships as sword-text-*).

A zText module keeps each testament (`ot`, `nt`) in three files:
    NAME.bzz   zlib-compressed blocks of text, one after another
    NAME.bzs   one 12-byte record per block: offset and compressed size in .bzz, uncompressed size
    NAME.bzv   one 10-byte record per verse slot: block index (uint32), offset into the uncompressed
               block (uint32), length (uint16); all little-endian, length 0 for an empty slot
The slots follow the module's versification (the `Versification=` line of its mods.d/*.conf):
    [module heading, testament heading] then per book [book heading, then per chapter
    [chapter heading, verse 1, verse 2, ...]]
so a slot maps to (book, chapter, verse) only through the versification's table of books, chapters and
verses per chapter. The tables below are the SWORD library's KJV and NRSVA tables (canon.h,
canon_nrsva.h); `slots` checks the layout against the module (slot counts, and every <chapter osisID=..>
tag sitting in the heading slot where the table puts it), so a wrong table fails loudly.

Verse text is OSIS markup; `clean_osis` turns it into plain text.
"""
from __future__ import annotations

import html
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------- versifications

# (OSIS id, name, verses in each chapter). The KJV table of the SWORD library.
_KJV_OT = (
    ("Gen", "Genesis", (31, 25, 24, 26, 32, 22, 24, 22, 29, 32, 32, 20, 18, 24, 21, 16, 27, 33, 38, 18,
                        34, 24, 20, 67, 34, 35, 46, 22, 35, 43, 55, 32, 20, 31, 29, 43, 36, 30, 23, 23,
                        57, 38, 34, 34, 28, 34, 31, 22, 33, 26)),
    ("Exod", "Exodus", (22, 25, 22, 31, 23, 30, 25, 32, 35, 29, 10, 51, 22, 31, 27, 36, 16, 27, 25, 26,
                        36, 31, 33, 18, 40, 37, 21, 43, 46, 38, 18, 35, 23, 35, 35, 38, 29, 31, 43, 38)),
    ("Lev", "Leviticus", (17, 16, 17, 35, 19, 30, 38, 36, 24, 20, 47, 8, 59, 57, 33, 34, 16, 30, 37, 27,
                          24, 33, 44, 23, 55, 46, 34)),
    ("Num", "Numbers", (54, 34, 51, 49, 31, 27, 89, 26, 23, 36, 35, 16, 33, 45, 41, 50, 13, 32, 22, 29,
                        35, 41, 30, 25, 18, 65, 23, 31, 40, 16, 54, 42, 56, 29, 34, 13)),
    ("Deut", "Deuteronomy", (46, 37, 29, 49, 33, 25, 26, 20, 29, 22, 32, 32, 18, 29, 23, 22, 20, 22, 21, 20,
                             23, 30, 25, 22, 19, 19, 26, 68, 29, 20, 30, 52, 29, 12)),
    ("Josh", "Joshua", (18, 24, 17, 24, 15, 27, 26, 35, 27, 43, 23, 24, 33, 15, 63, 10, 18, 28, 51, 9,
                        45, 34, 16, 33)),
    ("Judg", "Judges", (36, 23, 31, 24, 31, 40, 25, 35, 57, 18, 40, 15, 25, 20, 20, 31, 13, 31, 30, 48,
                        25)),
    ("Ruth", "Ruth", (22, 23, 18, 22)),
    ("1Sam", "1 Samuel", (28, 36, 21, 22, 12, 21, 17, 22, 27, 27, 15, 25, 23, 52, 35, 23, 58, 30, 24, 42,
                          15, 23, 29, 22, 44, 25, 12, 25, 11, 31, 13)),
    ("2Sam", "2 Samuel", (27, 32, 39, 12, 25, 23, 29, 18, 13, 19, 27, 31, 39, 33, 37, 23, 29, 33, 43, 26,
                          22, 51, 39, 25)),
    ("1Kgs", "1 Kings", (53, 46, 28, 34, 18, 38, 51, 66, 28, 29, 43, 33, 34, 31, 34, 34, 24, 46, 21, 43,
                         29, 53)),
    ("2Kgs", "2 Kings", (18, 25, 27, 44, 27, 33, 20, 29, 37, 36, 21, 21, 25, 29, 38, 20, 41, 37, 37, 21,
                         26, 20, 37, 20, 30)),
    ("1Chr", "1 Chronicles", (54, 55, 24, 43, 26, 81, 40, 40, 44, 14, 47, 40, 14, 17, 29, 43, 27, 17, 19, 8,
                              30, 19, 32, 31, 31, 32, 34, 21, 30)),
    ("2Chr", "2 Chronicles", (17, 18, 17, 22, 14, 42, 22, 18, 31, 19, 23, 16, 22, 15, 19, 14, 19, 34, 11, 37,
                              20, 12, 21, 27, 28, 23, 9, 27, 36, 27, 21, 33, 25, 33, 27, 23)),
    ("Ezra", "Ezra", (11, 70, 13, 24, 17, 22, 28, 36, 15, 44)),
    ("Neh", "Nehemiah", (11, 20, 32, 23, 19, 19, 73, 18, 38, 39, 36, 47, 31)),
    ("Esth", "Esther", (22, 23, 15, 17, 14, 14, 10, 17, 32, 3)),
    ("Job", "Job", (22, 13, 26, 21, 27, 30, 21, 22, 35, 22, 20, 25, 28, 22, 35, 22, 16, 21, 29, 29,
                    34, 30, 17, 25, 6, 14, 23, 28, 25, 31, 40, 22, 33, 37, 16, 33, 24, 41, 30, 24,
                    34, 17)),
    ("Ps", "Psalms", (6, 12, 8, 8, 12, 10, 17, 9, 20, 18, 7, 8, 6, 7, 5, 11, 15, 50, 14, 9,
                      13, 31, 6, 10, 22, 12, 14, 9, 11, 12, 24, 11, 22, 22, 28, 12, 40, 22, 13, 17,
                      13, 11, 5, 26, 17, 11, 9, 14, 20, 23, 19, 9, 6, 7, 23, 13, 11, 11, 17, 12,
                      8, 12, 11, 10, 13, 20, 7, 35, 36, 5, 24, 20, 28, 23, 10, 12, 20, 72, 13, 19,
                      16, 8, 18, 12, 13, 17, 7, 18, 52, 17, 16, 15, 5, 23, 11, 13, 12, 9, 9, 5,
                      8, 28, 22, 35, 45, 48, 43, 13, 31, 7, 10, 10, 9, 8, 18, 19, 2, 29, 176, 7,
                      8, 9, 4, 8, 5, 6, 5, 6, 8, 8, 3, 18, 3, 3, 21, 26, 9, 8, 24, 13,
                      10, 7, 12, 15, 21, 10, 20, 14, 9, 6)),
    ("Prov", "Proverbs", (33, 22, 35, 27, 23, 35, 27, 36, 18, 32, 31, 28, 25, 35, 33, 33, 28, 24, 29, 30,
                          31, 29, 35, 34, 28, 28, 27, 28, 27, 33, 31)),
    ("Eccl", "Ecclesiastes", (18, 26, 22, 16, 20, 12, 29, 17, 18, 20, 10, 14)),
    ("Song", "Song of Solomon", (17, 17, 11, 16, 16, 13, 13, 14)),
    ("Isa", "Isaiah", (31, 22, 26, 6, 30, 13, 25, 22, 21, 34, 16, 6, 22, 32, 9, 14, 14, 7, 25, 6,
                       17, 25, 18, 23, 12, 21, 13, 29, 24, 33, 9, 20, 24, 17, 10, 22, 38, 22, 8, 31,
                       29, 25, 28, 28, 25, 13, 15, 22, 26, 11, 23, 15, 12, 17, 13, 12, 21, 14, 21, 22,
                       11, 12, 19, 12, 25, 24)),
    ("Jer", "Jeremiah", (19, 37, 25, 31, 31, 30, 34, 22, 26, 25, 23, 17, 27, 22, 21, 21, 27, 23, 15, 18,
                         14, 30, 40, 10, 38, 24, 22, 17, 32, 24, 40, 44, 26, 22, 19, 32, 21, 28, 18, 16,
                         18, 22, 13, 30, 5, 28, 7, 47, 39, 46, 64, 34)),
    ("Lam", "Lamentations", (22, 22, 66, 22, 22)),
    ("Ezek", "Ezekiel", (28, 10, 27, 17, 17, 14, 27, 18, 11, 22, 25, 28, 23, 23, 8, 63, 24, 32, 14, 49,
                         32, 31, 49, 27, 17, 21, 36, 26, 21, 26, 18, 32, 33, 31, 15, 38, 28, 23, 29, 49,
                         26, 20, 27, 31, 25, 24, 23, 35)),
    ("Dan", "Daniel", (21, 49, 30, 37, 31, 28, 28, 27, 27, 21, 45, 13)),
    ("Hos", "Hosea", (11, 23, 5, 19, 15, 11, 16, 14, 17, 15, 12, 14, 16, 9)),
    ("Joel", "Joel", (20, 32, 21)),
    ("Amos", "Amos", (15, 16, 15, 13, 27, 14, 17, 14, 15)),
    ("Obad", "Obadiah", (21,)),
    ("Jonah", "Jonah", (17, 10, 10, 11)),
    ("Mic", "Micah", (16, 13, 12, 13, 15, 16, 20)),
    ("Nah", "Nahum", (15, 13, 19)),
    ("Hab", "Habakkuk", (17, 20, 19)),
    ("Zeph", "Zephaniah", (18, 15, 20)),
    ("Hag", "Haggai", (15, 23)),
    ("Zech", "Zechariah", (21, 13, 10, 14, 11, 15, 14, 23, 17, 12, 17, 14, 9, 21)),
    ("Mal", "Malachi", (14, 17, 18, 6)),
)

_KJV_NT = (
    ("Matt", "Matthew", (25, 23, 17, 25, 48, 34, 29, 34, 38, 42, 30, 50, 58, 36, 39, 28, 27, 35, 30, 34,
                         46, 46, 39, 51, 46, 75, 66, 20)),
    ("Mark", "Mark", (45, 28, 35, 41, 43, 56, 37, 38, 50, 52, 33, 44, 37, 72, 47, 20)),
    ("Luke", "Luke", (80, 52, 38, 44, 39, 49, 50, 56, 62, 42, 54, 59, 35, 35, 32, 31, 37, 43, 48, 47,
                      38, 71, 56, 53)),
    ("John", "John", (51, 25, 36, 54, 47, 71, 53, 59, 41, 42, 57, 50, 38, 31, 27, 33, 26, 40, 42, 31,
                      25)),
    ("Acts", "Acts", (26, 47, 26, 37, 42, 15, 60, 40, 43, 48, 30, 25, 52, 28, 41, 40, 34, 28, 41, 38,
                      40, 30, 35, 27, 27, 32, 44, 31)),
    ("Rom", "Romans", (32, 29, 31, 25, 21, 23, 25, 39, 33, 21, 36, 21, 14, 23, 33, 27)),
    ("1Cor", "1 Corinthians", (31, 16, 23, 21, 13, 20, 40, 13, 27, 33, 34, 31, 13, 40, 58, 24)),
    ("2Cor", "2 Corinthians", (24, 17, 18, 18, 21, 18, 16, 24, 15, 18, 33, 21, 14)),
    ("Gal", "Galatians", (24, 21, 29, 31, 26, 18)),
    ("Eph", "Ephesians", (23, 22, 21, 32, 33, 24)),
    ("Phil", "Philippians", (30, 30, 21, 23)),
    ("Col", "Colossians", (29, 23, 25, 18)),
    ("1Thess", "1 Thessalonians", (10, 20, 13, 18, 28)),
    ("2Thess", "2 Thessalonians", (12, 17, 18)),
    ("1Tim", "1 Timothy", (20, 15, 16, 16, 25, 21)),
    ("2Tim", "2 Timothy", (18, 26, 17, 22)),
    ("Titus", "Titus", (16, 15, 15)),
    ("Phlm", "Philemon", (25,)),
    ("Heb", "Hebrews", (14, 18, 19, 16, 14, 20, 28, 13, 28, 39, 40, 29, 25)),
    ("Jas", "James", (27, 26, 18, 17, 20)),
    ("1Pet", "1 Peter", (25, 25, 22, 19, 14)),
    ("2Pet", "2 Peter", (21, 22, 18)),
    ("1John", "1 John", (10, 29, 24, 21, 21)),
    ("2John", "2 John", (13,)),
    ("3John", "3 John", (14,)),
    ("Jude", "Jude", (25,)),
    ("Rev", "Revelation", (20, 29, 22, 11, 14, 17, 17, 13, 21, 11, 19, 17, 18, 20, 8, 21, 18, 24, 21, 15,
                           27, 21)),
)

# NRSVA: the KJV books with the same chapters and verses, except 3 John (15 verses) and Revelation 12
# (18 verses), and the deuterocanonical books after Malachi in the Old Testament file.
_NRSVA_DEUTEROCANON = (
    ("Tob", "Tobit", (22, 14, 17, 21, 22, 18, 16, 21, 6, 13, 18, 22, 17, 15)),
    ("Jdt", "Judith", (16, 28, 10, 15, 24, 21, 32, 36, 14, 23, 23, 20, 20, 19, 14, 25)),
    ("EsthGr", "Esther (Greek)", (22, 23, 15, 17, 14, 14, 10, 17, 32, 13, 12, 6, 18, 19, 16, 24)),
    ("Wis", "Wisdom", (16, 24, 19, 20, 23, 25, 30, 21, 18, 21, 26, 27, 19, 31, 19, 29, 21, 25, 22)),
    ("Sir", "Sirach", (30, 18, 31, 31, 15, 37, 36, 19, 18, 31, 34, 18, 26, 27, 20, 30, 32, 33, 30, 31,
                       28, 27, 27, 34, 26, 29, 30, 26, 28, 25, 31, 24, 33, 31, 26, 31, 31, 34, 35, 30,
                       22, 25, 33, 23, 26, 20, 25, 25, 16, 29, 30)),
    ("Bar", "Baruch", (22, 35, 37, 37, 9, 73)),
    ("PrAzar", "Prayer of Azariah", (68,)),
    ("Sus", "Susanna", (64,)),
    ("Bel", "Bel and the Dragon", (42,)),
    ("1Macc", "1 Maccabees", (64, 70, 60, 61, 68, 63, 50, 32, 73, 89, 74, 53, 53, 49, 41, 24)),
    ("2Macc", "2 Maccabees", (36, 32, 40, 50, 27, 31, 42, 36, 29, 38, 38, 45, 26, 46, 39)),
    ("1Esd", "1 Esdras", (58, 30, 24, 63, 73, 34, 15, 96, 55)),
    ("PrMan", "Prayer of Manasseh", (15,)),
    ("AddPs", "Psalm 151", (7,)),
    ("3Macc", "3 Maccabees", (29, 33, 30, 21, 51, 41, 23)),
    ("2Esd", "2 Esdras", (40, 48, 36, 52, 56, 59, 140, 63, 47, 59, 46, 51, 58, 48, 63, 78)),
    ("4Macc", "4 Maccabees", (35, 24, 21, 26, 38, 35, 23, 29, 32, 21, 27, 19, 27, 20, 32, 25, 24, 24)),
)


def _nrsva_nt():
    out = []
    for osis, name, verses in _KJV_NT:
        if osis == "3John":
            verses = (15,)
        elif osis == "Rev":
            verses = verses[:11] + (18,) + verses[12:]
        out.append((osis, name, verses))
    return tuple(out)


VERSIFICATIONS = {
    "KJV": {"ot": _KJV_OT, "nt": _KJV_NT},
    "NRSVA": {"ot": _KJV_OT + _NRSVA_DEUTEROCANON, "nt": _nrsva_nt()},
}

# One numbering of books across versifications (the order of the NRSVA, which holds all of them).
BOOKS: tuple[str, ...] = tuple(b[0] for b in VERSIFICATIONS["NRSVA"]["ot"] + VERSIFICATIONS["NRSVA"]["nt"])
BOOK_NAMES: dict[str, str] = {b[0]: b[1] for b in VERSIFICATIONS["NRSVA"]["ot"] + VERSIFICATIONS["NRSVA"]["nt"]}
BOOK_INDEX: dict[str, int] = {b: i for i, b in enumerate(BOOKS)}


class SwordError(ValueError):
    """A SWORD module's files do not fit the format or the versification they claim."""


def slot_table(versification: str, testament: str) -> list[tuple[str, int, int] | None]:
    """For each slot of the testament, its (book, chapter, verse), or None for a heading slot."""
    if versification not in VERSIFICATIONS:
        raise SwordError(f"versification {versification!r} is not known here "
                         f"(known: {', '.join(VERSIFICATIONS)})")
    table: list[tuple[str, int, int] | None] = [None, None]          # module heading, testament heading
    for osis, _, chapters in VERSIFICATIONS[versification][testament]:
        table.append(None)                                             # book heading
        for c, n in enumerate(chapters, start=1):
            table.append(None)                                         # chapter heading
            table.extend((osis, c, v) for v in range(1, n + 1))
    return table


# ----------------------------------------------------------------------------- reading a module

def read_conf(path: Path) -> dict[str, str]:
    """The key=value lines of a mods.d/*.conf (the first value of a repeated key wins)."""
    conf: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            conf.setdefault(key.strip(), value.strip())
    return conf


def read_ztext(bzs: Path, bzv: Path, bzz: Path) -> list[bytes]:
    """The raw (markup) bytes of every verse slot of one testament of a zText module."""
    blocks_raw, index, data = Path(bzs).read_bytes(), Path(bzv).read_bytes(), Path(bzz).read_bytes()
    if len(blocks_raw) % 12 or len(index) % 10:
        raise SwordError(f"{bzs.name} / {bzv.name}: sizes {len(blocks_raw)} / {len(index)} are not "
                         "multiples of the 12- and 10-byte records of a zText module")
    blocks = [struct.unpack_from("<III", blocks_raw, i) for i in range(0, len(blocks_raw), 12)]
    cache: dict[int, bytes] = {}
    out = []
    for i in range(0, len(index), 10):
        b, offset, length = struct.unpack_from("<IIH", index, i)
        if length == 0:
            out.append(b"")
            continue
        if b not in cache:
            if b >= len(blocks):
                raise SwordError(f"{bzv.name}: slot {i // 10} names block {b}, but {bzs.name} has {len(blocks)}")
            start, size, usize = blocks[b]
            cache[b] = zlib.decompress(data[start:start + size])
            if len(cache[b]) != usize:
                raise SwordError(f"{bzz.name}: block {b} is {len(cache[b])} bytes, {bzs.name} says {usize}")
        out.append(cache[b][offset:offset + length])
    return out


_CHAPTER_TAG = re.compile(rb'<chapter\b[^>]*\bosisID="([^".]+)\.(\d+)"')


def slots(raw: list[bytes], versification: str, testament: str) -> list[tuple[str, int, int] | None]:
    """The versification's slot table, checked against the module's slots."""
    table = slot_table(versification, testament)
    if len(table) != len(raw):
        raise SwordError(f"the {testament} file has {len(raw)} slots; {versification} versification "
                         f"has {len(table)}: the module does not use the versification it names")
    known = {b[0] for b in VERSIFICATIONS[versification][testament]}
    for i, text in enumerate(raw):
        # A chapter's tag sits in its heading slot, just before its first verse. Tags of books outside
        # the versification (Daniel (Greek) in the WEB, say) land in a nearby heading slot: skipped.
        for m in _CHAPTER_TAG.finditer(text) if b"<chapter" in text else ():
            book, chapter = m.group(1).decode(), int(m.group(2))
            if book not in known:
                continue
            expected = table[i + 1] if table[i] is None and i + 1 < len(table) else table[i]
            if expected is None or expected[:2] != (book, chapter):
                where = f"{expected[0]} {expected[1]}" if expected else "no chapter"
                raise SwordError(f"slot {i} of the {testament} file opens {book} {chapter}, but the "
                                 f"{versification} versification puts {where} there")
    return table


# ----------------------------------------------------------------------------- markup

_MARK = "\x00"   # where a footnote or a translator's addition was: a word boundary, unless punctuation follows
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note>", re.S)
_TITLE = re.compile(r"<title\b[^>]*/>|<title\b([^>]*)>(.*?)</title>", re.S)
_BOOK_END = re.compile(r'<div\b(?=[^>]*\beID=)(?=[^>]*\btype="book")[^>]*>')
_TRANSCHANGE = re.compile(r"</?transChange\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_MARK_BEFORE_PUNCT = re.compile(_MARK + r"+(?=[,.;:!?)\]”’»])")
_MARK_AFTER_OPENING = re.compile(r"(?<=[(\[¿¡“‘«])" + _MARK + "+")


def clean_osis(markup: str) -> str:
    """Plain text of an OSIS verse: notes and section titles dropped with their contents (a canonical
    title, such as a psalm's "A Psalm by David.", is scripture and kept), <transChange> tags (words a
    translator added) made word boundaries, all other tags dropped, entities unescaped and whitespace
    collapsed. Whatever follows the book's closing tag (a glossary after Revelation) is not the verse.
    A footnote often stands in place of the space between two words (`God</w><note>...</note><w>created`):
    footnotes and <transChange> tags become a space, except next to punctuation (`Abram<transChange>de
    allí</transChange>,` reads "Abram de allí,")."""
    end = _BOOK_END.search(markup)
    text = _NOTE.sub(_MARK, markup[:end.start()] if end else markup)
    text = _TITLE.sub(lambda m: f" {m.group(2)} " if m.group(1) and 'canonical="true"' in m.group(1) else "", text)
    text = _TRANSCHANGE.sub(_MARK, text)
    text = _TAG.sub("", text)
    text = _MARK_AFTER_OPENING.sub("", _MARK_BEFORE_PUNCT.sub("", text)).replace(_MARK, " ")
    return " ".join(html.unescape(text).split())


@dataclass
class Verses:
    """The non-empty verses of a module, in slot order."""
    books: list[str]
    chapters: list[int]
    verses: list[int]
    texts: list[str]

    def by_ref(self) -> dict[tuple[str, int, int], str]:
        return {(b, c, v): t for b, c, v, t in zip(self.books, self.chapters, self.verses, self.texts)}


def read_module(conf: Path, files: dict[str, Path]) -> Verses:
    """Every non-empty verse of a zText module. `files` maps "ot.bzs", "ot.bzv", ... "nt.bzz" to paths;
    the versification comes from the module's .conf (KJV when it names none, as SWORD does)."""
    versification = read_conf(conf).get("Versification", "KJV")
    out = Verses([], [], [], [])
    for testament in ("ot", "nt"):
        raw = read_ztext(files[f"{testament}.bzs"], files[f"{testament}.bzv"], files[f"{testament}.bzz"])
        for ref, markup in zip(slots(raw, versification, testament), raw):
            if ref is None or not markup:
                continue
            text = clean_osis(markup.decode("utf-8"))
            if text:
                out.books.append(ref[0])
                out.chapters.append(ref[1])
                out.verses.append(ref[2])
                out.texts.append(text)
    return out
