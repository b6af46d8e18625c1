"""Text, translation, sentiment and time-series datasets, on the real packaged data (fetched into the cache on
first use), and the readers for the user's own TSV and CSV files."""
import hashlib
import re
import tarfile

import numpy as np
import pytest

from pillars import data
from pillars.data import registry, sword
from pillars.data import text as T
from pillars.data.series import infer_season, load_csv_series, weather
from tests.conftest import pillars


# ----------------------------------------------------------------------------- registry: archives, several sources

def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dataset_can_keep_a_package_archive_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("PILLARS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PILLARS_OFFLINE", raising=False)
    src = tmp_path / "package"
    (src / "data").mkdir(parents=True)
    for year in (1999, 2000):
        (src / "data" / f"{year}.txt").write_text(f"text of {year}")
    archive = tmp_path / "pkg-1.0.tgz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(src, arcname="package")
    seen = []

    def parse(paths):
        members = registry.read_members(paths["pkg-1.0.tgz"], lambda n: n.endswith(".txt"))
        seen.append(sorted(members))
        return {"n": np.array([len(members)])}

    ds = registry.Dataset(
        name="toy-archive", kind="test", description="", licence="", size="",
        files=(registry.RawFile("pkg-1.0.tgz", _sha(archive), "pkg-1.0.tgz", archive.as_uri(), archive=True),),
        sources=(registry.Installed("json"), registry.Web()), parse=parse)
    monkeypatch.setitem(registry.REGISTRY, ds.name, ds)
    messages = []
    assert registry.load(ds.name, log=messages.append)["n"][0] == 2
    assert seen == [["package/data/1999.txt", "package/data/2000.txt"]]
    assert registry.sha256_of(ds.raw_dir / "pkg-1.0.tgz") == _sha(archive)

    archive.write_bytes(archive.read_bytes() + b"tampered")      # the web copy changes: refused, named
    monkeypatch.setitem(registry.REGISTRY, "toy-archive-2", registry.Dataset(
        **{**ds.__dict__, "name": "toy-archive-2"}))
    with pytest.raises(registry.DataError) as e:
        registry.fetch("toy-archive-2")
    assert "keeps no package archive" in str(e.value) and "expected" in str(e.value)


def test_read_members_reads_a_deb(tmp_path):
    payload = tmp_path / "payload"
    (payload / "usr" / "share").mkdir(parents=True)
    (payload / "usr" / "share" / "a.txt").write_text("inside a deb")
    tar = tmp_path / "data.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(payload / "usr", arcname="./usr")
    members = [("debian-binary", b"2.0\n"), ("data.tar.gz", tar.read_bytes())]
    deb = tmp_path / "pkg_1.0_all.deb"
    deb.write_bytes(b"!<arch>\n" + b"".join(
        f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body + b"\n" * (len(body) % 2)
        for name, body in members))
    assert registry.read_members(deb, lambda n: n.endswith(".txt")) == {"./usr/share/a.txt": b"inside a deb"}
    with pytest.raises(registry.DataError, match="cannot be read as an archive"):
        registry.read_members(tar.with_name("payload"), lambda n: True)


class _Folder(registry.Source):
    def __init__(self, root):
        self.root = root

    def describe(self):
        return f"folder {self.root.name}"

    def provide(self, files, work):
        return self.root


def test_files_from_several_packages_are_each_kept_from_the_source_that_has_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PILLARS_HOME", str(tmp_path / "home"))
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    (one / "a.txt").write_text("a")
    (two / "b.txt").write_text("b")
    ds = registry.Dataset(
        name="toy-two", kind="test", description="", licence="", size="",
        files=(registry.RawFile("a.txt", _sha(one / "a.txt"), "a.txt"),
               registry.RawFile("b.txt", _sha(two / "b.txt"), "b.txt")),
        sources=(_Folder(one), _Folder(two)), parse=None)
    monkeypatch.setitem(registry.REGISTRY, ds.name, ds)
    paths = registry.fetch(ds.name)
    assert paths["a.txt"].read_text() == "a" and paths["b.txt"].read_text() == "b"


# ----------------------------------------------------------------------------- State of the Union

@pytest.fixture(scope="module")
def sotu():
    return data.load("sotu")


def test_sotu_has_233_addresses_in_year_order_and_a_split_in_time(sotu):
    years = sotu["years"]
    assert len(years) == 233 and years[0] == 1790 and years[-1] == 2021 and np.all(np.diff(years) >= 0)
    assert sotu["names"][0] == "George Washington" and sotu["names"][-1] == "Joseph R Biden"
    text = T.sotu_concatenated()
    assert len(text) == 10_760_251      # 10.76M characters
    assert text.startswith("Fellow-Citizens of the Senate") and "\n\n\n" not in text
    speeches = T.sotu_speeches()
    assert "\n\n".join(s for _, _, s in speeches) == text
    split = sotu["split"]
    train, valid, test = (years[split == c] for c in (0, 1, 2))
    assert train.max() < valid.min() <= valid.max() < test.min() == 2010 and test.max() == 2021
    splits = T.corpus_splits("sotu")
    assert text.endswith(splits["test"]) and splits["valid"] + "\n\n" + splits["test"] in text
    assert 0.03 < len(splits["test"]) / len(text) < 0.06 and 0.04 < len(splits["valid"]) / len(text) < 0.06


# ----------------------------------------------------------------------------- Brown

def test_brown_is_plain_text_of_1_16m_tokens_split_by_file():
    b = data.load("brown")
    assert b["file_tokens"].sum() == 1_161_192 and len(b["file_names"]) == 500
    text = T.as_text(b["text"])
    assert not re.search(r"\S/(at|nn|nns|np|vbd|vbz|in|jj|cc|rb|cs|ppss)(-tl|-hl)?(?=\s|$)", text)  # no /TAG left
    assert text.startswith("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent "
                           'primary election produced "no evidence" that any irregularities took place.\n')
    assert "``" not in text and " ," not in text and " ." not in text
    assert not re.search(r"(?<![0-9])''", text)   # quotes became ", and only inches (4' 10'') are left
    assert len(set(b["file_genre"])) == 15 == len(data.get("brown").meta["genres"])
    assert np.bincount(b["file_split"]).tolist() == [400, 50, 50]
    splits = T.corpus_splits("brown")
    assert sum(len(s) for s in splits.values()) + 4 == len(text)   # every file in one split


# ----------------------------------------------------------------------------- SWORD and the Bibles

def test_slot_tables_fit_the_modules_and_markup_is_cleaned():
    count = lambda v, t: len(sword.slot_table(v, t))   # noqa: E731
    assert (count("KJV", "ot"), count("KJV", "nt"), count("NRSVA", "ot"), count("NRSVA", "nt")) == \
        (24115, 8246, 31027, 8248)
    table = sword.slot_table("KJV", "ot")
    assert table[:5] == [None, None, None, None, ("Gen", 1, 1)]
    markup = ('<w lemma="x">God</w><note placement="foot">The Hebrew &amp; Greek</note><w>created</w> '
              '<title type="x">Heading</title>the <transChange type="added">heavens</transChange>. '
              'Amen<note n="a">1</note>. <title canonical="true" type="psalm">A Psalm.</title>Go&#8217;s')
    assert sword.clean_osis(markup) == "God created the heavens. Amen. A Psalm. Go’s"
    with pytest.raises(sword.SwordError):
        sword.slot_table("Vulgate", "ot")


def test_bible_web_verses():
    verses = {(b, c, v): t for b, c, v, t in T.bible_verses("bible-web")}
    assert len(verses) == 37_457
    assert verses[("Gen", 1, 1)] == "In the beginning, God created the heavens and the earth."
    assert verses[("John", 3, 16)] == ("For God so loved the world, that he gave his only born Son, that whoever "
                                       "believes in him should not perish, but have eternal life.")
    # the NRSVA has slots for 3 John 1:15 and Revelation 12:18, but this WEB leaves them empty
    assert ("3John", 1, 15) not in verses and "Peace be to you." in verses[("3John", 1, 14)]
    text = T.as_text(data.load("bible-web")["text"])
    assert "<" not in text and ">" not in text and "Glossary" not in text and "Elohim" not in text
    a = data.load("bible-web")
    held_out = {sword.BOOKS[i] for i in a["book"][a["split"] > 0]}
    assert held_out == set(T.BIBLE_TEST_BOOKS) | set(T.BIBLE_VALID_BOOKS)


def test_bible_es_en_pairs_by_reference_with_held_out_books():
    a = data.load("bible-es-en")
    assert 30_000 < len(a["book"]) < 31_100
    pairs = {(sword.BOOKS[b], int(c), int(v)): (s, t) for b, c, v, s, t in zip(
        a["book"], a["chapter"], a["verse"], T.unpack_strings(a["src"], a["src_offsets"]),
        T.unpack_strings(a["tgt"], a["tgt_offsets"]))}
    es, en = pairs[("John", 3, 16)]
    assert es.startswith("Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito")
    assert en.startswith("For God so loved the world")
    assert pairs[("Gen", 12, 9)][0] == "Y movió Abram de allí, caminando y yendo hacia el Mediodía."
    src = T.as_text(a["src"])
    assert not re.search(r"[a-záéíóúñ][A-ZÁÉÍÓÚÑ]", src) and " ," not in src and "<" not in src
    # the English-only verses, and Numbers 13, which the RV1909 numbers one verse ahead, are left out
    assert ("3John", 1, 15) not in pairs and ("Rev", 12, 18) not in pairs and ("Num", 13, 2) not in pairs
    books = {s: {sword.BOOKS[b] for b in a["book"][a["split"] == c]} for s, c in T.SPLITS.items()}
    assert not books["train"] & books["test"] and not books["train"] & books["valid"]
    assert not books["valid"] & books["test"] and books["test"] == set(T.BIBLE_TEST_BOOKS)
    test = T.bible_pairs("test")
    assert 0.02 < len(test) / len(pairs) < 0.05 and test[0][1].startswith("In the days when the judges judged")
    assert len(T.bible_pairs("train")) + len(T.bible_pairs("valid")) + len(test) == len(pairs)


# ----------------------------------------------------------------------------- the user's sentence pairs

def test_tsv_pairs_split_at_random_with_a_seed(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"hola {i}\thello {i}\n" for i in range(50)) + "\n", encoding="utf-8")
    train, valid, test = T.load_tsv_pairs(path, held_out=0.2, seed=1)
    assert (len(train), len(valid), len(test)) == (30, 10, 10) and ("hola 3", "hello 3") in train + valid + test
    assert sorted(train + valid + test) == sorted((f"hola {i}", f"hello {i}") for i in range(50))
    assert train == sorted(train, key=lambda p: int(p[0].split()[1]))   # each part in file order
    assert T.load_tsv_pairs(path, held_out=0.2, seed=1) == (train, valid, test)
    assert T.load_tsv_pairs(path, held_out=0.2, seed=2)[2] != test
    two = tmp_path / "two.tsv"
    two.write_text("hola\thello\nadiós\tgoodbye\n", encoding="utf-8")
    with pytest.raises(data.DataError, match="too few to hold 10% out for testing and as many for validation"):
        T.load_tsv_pairs(two, held_out=0.1)


@pytest.mark.parametrize("content, words", [
    ("uno\tone\ndos two\n", ["line 2", "no tab", "one tab"]),
    ("uno\tone\ttres\n", ["line 1", "2 tabs"]),
    ("uno\t \n", ["line 1", "target sentence is empty"]),
    ("", ["no sentence pairs"]),
    ("\n\n", ["no sentence pairs"]),
])
def test_tsv_pairs_errors_name_file_line_and_fix(tmp_path, content, words):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        T.load_tsv_pairs(path)
    assert isinstance(e.value, data.DataError) and str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(data.DataError, match="no such file"):
        T.load_tsv_pairs(tmp_path / "absent.tsv")


# ----------------------------------------------------------------------------- movie reviews

def test_movie_reviews_and_vader_lexicon():
    m = data.load("movie-reviews")
    assert len(m["score"]) == 10_605 and m["score"].dtype == np.float32
    assert m["score"].min() >= -4 and m["score"].max() <= 4 and (m["score"] == 0).sum() == 37
    assert np.bincount(m["split"]).tolist() == [8483, 1061, 1061]
    assert T.unpack_strings(m["text"], m["offsets"], [2]) == ["Effective but too tepid biopic"]
    texts, labels = T.movie_reviews("test")
    assert len(texts) == len(labels) == 1057 and set(labels.tolist()) == {0, 1}
    assert sum(len(T.movie_reviews(s)[0]) for s in T.SPLITS) == 10_605 - 37
    lexicon = T.vader_lexicon()
    assert len(lexicon) > 7000 and lexicon["good"] > 0 > lexicon["bad"]


# ----------------------------------------------------------------------------- weather and series

def test_weather_is_8760_plausible_hours_with_a_daily_season():
    w = data.load("weather")
    assert w["temperature"].shape == (2, 8760) and w["temperature"].dtype == np.float32
    assert np.array_equal(w["hour"], np.arange(8760)) and w["hour_of_day"][:25].tolist() == list(range(24)) + [0]
    greensboro = weather("greensboro")
    assert -25 < greensboro.min() < 0 < 30 < greensboro.max() < 42 and 10 < greensboro.mean() < 20
    assert greensboro[w["month"] == 7].mean() > greensboro[w["month"] == 1].mean() + 15
    assert 0 <= w["humidity"].min() and w["humidity"].max() <= 100 and w["ghi"].min() >= 0
    assert infer_season(greensboro) == 24 and infer_season(weather("sand-point")) == 24


def test_infer_season_on_synthetic_series():
    t = np.arange(600)
    rng = np.random.default_rng(0)
    assert infer_season(np.sin(2 * np.pi * t / 7)) == 7
    assert infer_season(np.sin(2 * np.pi * t / 12) + 0.01 * t + rng.normal(0, 0.3, 600)) == 12
    assert infer_season(rng.normal(size=600)) is None
    assert infer_season(np.ones(100)) is None
    with pytest.raises(ValueError):
        infer_season([1.0, 2.0])


def test_csv_series_loader_and_its_errors(tmp_path):
    good = tmp_path / "sales.csv"
    good.write_text("month,sales\n2020-01,10\n\n2020-02,12.5\n2020-03,-3\n")
    np.testing.assert_allclose(load_csv_series(good, "sales"), [10, 12.5, -3])
    np.testing.assert_allclose(load_csv_series(good, 1), [10, 12.5, -3])
    semi = tmp_path / "semi.csv"
    semi.write_text("t;value\n1;2\n2;3\n")
    np.testing.assert_allclose(load_csv_series(semi, "value"), [2, 3])

    with pytest.raises(ValueError, match=r"no column named 'revenue'; the columns are: month, sales"):
        load_csv_series(good, "revenue")
    bad = tmp_path / "bad.csv"
    bad.write_text("month,sales\n2020-01,10\n2020-02,n/a\n")
    with pytest.raises(data.DataError, match=r"bad.csv, line 3: 'n/a' in column 'sales' is not a number"):
        load_csv_series(bad, "sales")
    newest = tmp_path / "newest.csv"   # a price download that lists the latest day first
    newest.write_text("Date,Close\n2024-01-04,3\n2024-01-03,2\n2024-01-02 ,1\n")
    np.testing.assert_allclose(load_csv_series(newest, "Close"), [1, 2, 3])
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("Date,Close\n2024-01-02 09:30,1\n2024-01-04 09:30,3\n2024-01-03 09:30,2\n")
    with pytest.raises(data.DataError, match=r"shuffled.csv, line 4: Date 2024-01-03 09:30 after 2024-01-04 09:30 "
                                             r"breaks the file's time order; sort the lines by Date"):
        load_csv_series(shuffled, "Close")
    repeated = tmp_path / "repeated.csv"   # the direction comes from the first change of date
    repeated.write_text("Date,Close\n2024-01-01,1\n2024-01-01,2\n2024-01-02,3\n2024-01-01,4\n")
    with pytest.raises(data.DataError, match=r"repeated.csv, line 5: Date 2024-01-01 after 2024-01-02"):
        load_csv_series(repeated, "Close")
    other = tmp_path / "other.csv"   # ISO dates in a column not named as a time do not order the file
    other.write_text("When,Expiry,Close\n01/01/2024,2024-06-01,1\n01/02/2024,2024-03-01,2\n")
    np.testing.assert_allclose(load_csv_series(other, "Close"), [1, 2])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(data.DataError, match="the file is empty"):
        load_csv_series(empty, "sales")
    with pytest.raises(data.DataError, match="no such file"):
        load_csv_series(tmp_path / "absent.csv", "sales")


# ----------------------------------------------------------------------------- command line

def test_data_list_names_the_new_datasets():
    out = pillars("data", "list").stdout
    for name in ("sotu", "brown", "bible-web", "bible-es-en", "movie-reviews", "weather"):
        assert name in out
    info = pillars("data", "info", "sotu").stdout
    assert "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9" in info
    assert "registry.npmjs.org" in info
