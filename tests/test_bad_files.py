"""Every data file a user names is read once, decoded as it is meant or refused with a message that names it:
images of any bit depth (and decompression bombs, truncated files), image folders whose layout would leave
images out or invent classes, CSV series, TSV sentence pairs. Each command ends with exit status 2 and one
`error:` line naming the file, never a traceback."""
import numpy as np
import pytest
from PIL import Image

from pillars.data.folder import load_image_folder, open_image
from pillars.data.registry import InputFileError
from pillars.data.series import load_csv_series
from tests.conftest import pillars, sets


def refused(*args) -> str:
    """The one-line error of a command that must refuse its input (exit 2, no traceback)."""
    r = pillars(*args, check=False)
    err = " ".join(r.stderr.split())   # the console wraps long lines
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in err, (r.returncode, r.stderr[-2000:])
    return err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A digits-cnn run of 3 steps (about a second): what `pillars predict` reads."""
    run = tmp_path_factory.mktemp("digits") / "run"
    pillars("train", "digits-cnn", "--max-steps", "3", "--out", str(run), "--no-progress")
    return run


GREY = np.random.default_rng(0).integers(0, 256, (12, 20)).astype(np.uint8)


@pytest.mark.parametrize("name, image", [
    ("grey16.png", Image.fromarray(GREY.astype(np.uint16) * 257)),                     # opens as I;16
    ("grey16.tif", Image.fromarray(GREY.astype(np.uint16) * 257)),
    ("int32.tif", Image.fromarray(GREY.astype(np.int32) * 257)),                        # mode I
    ("unit.tif", Image.fromarray(GREY.astype(np.float32) / 255)),                       # mode F in [0, 1]
])
def test_every_bit_depth_decodes_like_its_8_bit_equivalent(tmp_path, name, image):
    image.save(tmp_path / name)
    pixels = np.asarray(open_image(tmp_path / name)).astype(int)
    assert pixels.shape == (12, 20, 3) and np.abs(pixels - GREY[..., None]).max() <= 1


def test_a_transparent_colour_of_a_grey_or_rgb_png_is_laid_on_white(tmp_path):
    """PNG's tRNS chunk: one grey level or colour is transparent, in modes L and RGB (not only RGBA, LA, P)."""
    Image.fromarray(GREY).save(tmp_path / "grey.png", transparency=int(GREY[0, 0]))
    Image.fromarray(GREY).convert("RGB").save(tmp_path / "rgb.png", transparency=(int(GREY[0, 0]),) * 3)
    for name in ("grey.png", "rgb.png"):
        clear = GREY == GREY[0, 0]
        pixels = np.asarray(open_image(tmp_path / name))
        assert (pixels[clear] == 255).all() and (pixels[~clear] == GREY[~clear, None]).all()


@pytest.mark.parametrize("image, words", [
    (Image.fromarray(np.float32([[0, 3000]])), "from 0 to 3000"),
    (Image.fromarray(np.float32([[0, np.nan]])), "NaN or infinite"),
    (Image.fromarray(np.int32([[-5, 70000]])), "from -5 to 70000"),
])
def test_pixels_out_of_any_known_range_are_refused(tmp_path, image, words):
    image.save(tmp_path / "odd.tif")
    with pytest.raises(InputFileError, match=words) as e:
        open_image(tmp_path / "odd.tif")
    assert str(tmp_path / "odd.tif") in str(e.value)


def test_predict_reads_a_16_bit_png_as_its_8_bit_twin(tmp_path, digits_run):
    deep = np.random.default_rng(1).integers(0, 65536, (32, 32)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    Image.fromarray(np.round(deep / 257).astype(np.uint8)).save(tmp_path / "flat.png")
    outputs = [pillars("predict", str(digits_run), str(tmp_path / f), "--top-k", "10").stdout.splitlines()[1:]
               for f in ("deep.png", "flat.png")]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 10


def test_predict_refuses_bombs_truncated_files_and_folders(tmp_path, digits_run, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # a bomb at a scale a test can afford
    for side, pixels in ((40, "1,600"), (100, "10,000")):   # Pillow warns below twice its limit, refuses above
        Image.new("L", (side, side)).save(tmp_path / f"bomb{side}.png")
        err = refused("predict", str(digits_run), str(tmp_path / f"bomb{side}.png"))
        assert f"bomb{side}.png is too large: {pixels} pixels" in err and "limit of 1,000 pixels" in err
    from pillars.data.aerial import TILE   # a detector's orthophoto is cut into tiles, not resized
    with pytest.raises(InputFileError, match="limit of 1,000 pixels that guards .*; cut it into tiles"):
        open_image(tmp_path / "bomb100.png", TILE)
    whole = tmp_path / "whole.png"
    Image.fromarray(GREY).save(whole)
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:60])
    assert "cut.png is not a readable image (the file is cut short" in refused("predict", str(digits_run),
                                                                                str(tmp_path / "cut.png"))
    assert f"{tmp_path} is a folder" in refused("predict", str(digits_run), str(tmp_path))


# ----------------------------------------------------------------------------- image folders

def make_folder(root, layout: dict[str, int]):
    """`layout`: class folder (relative to root) -> number of tiny PNGs in it."""
    rng = np.random.default_rng(0)
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (10, 10)).astype(np.uint8)).save(root / folder / f"{i}.png")
    return root


def folder_error(root) -> str:
    return refused("train", "image-folder", "--dry-run", "--no-progress", *sets(f"data={root}", "image_size=8"))


@pytest.mark.parametrize("layout, words", [
    ({"train/cat": 4, "train/dog": 4, "test": 0},
     ["test holds no class folders", "classes of train/ (cat, dog)", "or remove test/ to hold 20% of train/ out"]),
    ({"train/cat": 4, "train/dog": 4, "test/cat": 0, "test/dog": 0}, ["class folder", "test/cat holds no images"]),
    ({"train/cat": 4, "train/dog": 4, "test/cat": 2, "test/Dog": 2},
     ["test class", "test/Dog is not a training class (train/dog differs only in case", "train/ are cat, dog"]),
    ({"train/cat": 4, "train/dog": 4, "train/bird": 0, "test/cat": 2}, ["train/bird holds no images"]),
    ({"train/cat": 4, "train/dog": 4, "valid/cat": 2}, ["valid: the validation images are always", "left out"]),
    ({"cat": 4, "dog": 4, ".": 1}, ["0.png is not in a class folder"]),
])
def test_image_folders_that_would_lose_or_invent_classes_are_refused(tmp_path, layout, words):
    err = folder_error(make_folder(tmp_path / "photos", layout))
    assert str(tmp_path / "photos") in err
    for w in words:
        assert w in err, err


def test_split_folders_in_other_spellings_are_not_taken_for_classes(tmp_path):
    for layout in ({"Train/cat": 2, "Train/dog": 2, "Test/cat": 1, "Test/dog": 1},
                   {"training_set/cat": 2, "training_set/dog": 2, "test_set/cat": 1, "test_set/dog": 1}):
        root = make_folder(tmp_path / str(len(list(tmp_path.iterdir()))), layout)
        with pytest.raises(InputFileError, match="look like split folders.*name them train/ and test/"):
            load_image_folder(root, size=8)
    vehicles = make_folder(tmp_path / "vehicles", {"Train": 2, "Car": 2})   # one such name is a class
    assert load_image_folder(vehicles, size=8, test_fraction=0.5)[1] == ["Car", "Train"]


def test_image_folder_names_a_bad_file_and_decodes_16_bit_files(tmp_path):
    root = make_folder(tmp_path / "photos", {"train/cat": 5, "train/dog": 5})   # no test/: 20% of train/ held out
    arrays, classes = load_image_folder(root, size=8)
    assert classes == ["cat", "dog"] and (len(arrays["train_x"]), len(arrays["test_x"])) == (8, 2)
    eight = np.asarray(Image.open(root / "train/cat/0.png"))
    Image.fromarray(eight.astype(np.uint16) * 257).save(root / "train/cat/0.png")
    assert np.array_equal(load_image_folder(root, size=8)[0]["train_x"], arrays["train_x"])
    (root / "train/dog/9.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert "train/dog/9.png is not a readable image" in folder_error(root)
    assert "or remove it from the folder" in folder_error(root)


# ----------------------------------------------------------------------------- CSV series

def write_csv(path, header: str, rows: list[str]):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_csv_columns_are_found_by_name_before_position(tmp_path):
    path = write_csv(tmp_path / "numbered.csv", "1,2,3", [f"{i},{10 + i},{20 + i}" for i in range(5)])
    np.testing.assert_allclose(load_csv_series(path, "2"), [10, 11, 12, 13, 14])   # the column named 2
    np.testing.assert_allclose(load_csv_series(path, "0"), [0, 1, 2, 3, 4])       # no such name: a position
    with pytest.raises(InputFileError, match=r"no column named '7' and no column 7 \(0-based: 0 to 2\); the "
                                             r"columns are: 1, 2, 3"):
        load_csv_series(path, "7")
    shifted = write_csv(tmp_path / "shifted.csv", "t,price", ["0,1.5", "1,1,234.50", "2,2.5"])
    with pytest.raises(InputFileError, match=r"shifted.csv, line 3: 3 fields where the first line names 2.*quote"):
        load_csv_series(shifted, "price")
    np.testing.assert_allclose(load_csv_series(write_csv(tmp_path / "trailing.csv", "t,price", ["0,1,", "1,2,"]),
                                               "price"), [1, 2])   # an empty field after the last: no harm


def forecast_error(path, column="price") -> str:
    return refused("train", "weather-lstm", "--dry-run", "--no-progress",
                   *sets(f"data={path}", f"column={column}", "history=24", "horizon=6", "hidden=8"))


def test_bad_csv_files_name_the_file_and_the_line(tmp_path):
    wave = [f"{i},{np.sin(i / 2):.4f}" for i in range(300)]
    cases = [
        (write_csv(tmp_path / "cell.csv", "t,price", wave[:40] + ["40,n/a"] + wave[41:]), "price",
         ["cell.csv, line 42: 'n/a' in column 'price' is not a number"]),
        (write_csv(tmp_path / "short.csv", "t,price", wave[:50]), "price",
         ["short.csv: column 'price' has 50 values, too few for a history of 24 and a horizon of 6",
          "it needs at least 186"]),
        (write_csv(tmp_path / "case.csv", "t,Price", wave), "price",
         ["case.csv: no column named 'price' ('Price' differs only in case); the columns are: t, Price"]),
        (write_csv(tmp_path / "twice.csv", "price,price", wave), "price", ["twice.csv: 2 columns are named 'price'"]),
        (write_csv(tmp_path / "huge.csv", "t,price", wave[:5] + ["5,1e39"] + wave[6:]), "price",
         ["huge.csv, line 7: '1e39'", "float32"]),
        (write_csv(tmp_path / "flat.csv", "t,price", [f"{i},3" for i in range(300)]), "price",
         ["flat.csv: column 'price' holds one value, 3, throughout"]),
    ]
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "latin.csv").write_bytes(b"t,price\n0,1\n1,caf\xe9\n")
    cases += [(tmp_path / "empty.csv", "price", ["empty.csv: the file is empty"]),
              (tmp_path / "latin.csv", "price", ["latin.csv, line 3: byte 0xe9 is not UTF-8"])]
    for path, column, words in cases:
        err = forecast_error(path, column)
        for w in words:
            assert w in err, err


# ----------------------------------------------------------------------------- TSV sentence pairs

@pytest.mark.parametrize("content, words", [
    (b"hola\thello\nadi\xf3s\tgoodbye\n", ["pairs.tsv, line 2: byte 0xf3 is not UTF-8"]),
    (b"hola\thello\n\n\nx\x00\ty\n", ["pairs.tsv, line 4: a NUL byte, so this is a binary file"]),
])
def test_bad_tsv_pairs_name_the_file_and_the_line(tmp_path, content, words):
    (tmp_path / "pairs.tsv").write_bytes(content)
    err = refused("train", "bible-translate", "--dry-run", "--no-progress", *sets(f"data={tmp_path / 'pairs.tsv'}"))
    for w in words:
        assert w in err, err


# ----------------------------------------------------------------------------- a text file to learn from

@pytest.mark.parametrize("content, words", [
    (b"", ["empty.txt holds no text"]),
    (b"  \n\n", ["empty.txt holds no text"]),
    (b"abc", ["has 3 characters", "at least 2,570 characters, or lower --set context"]),
    (b"ab\x00c" * 2000, ["line 1: a NUL byte, so this is a binary file"]),
    (b"a" * 80000, ["holds one distinct token ('a', tokenizer char): a language model has nothing to learn"]),
])
def test_a_text_file_that_cannot_train_a_language_model_is_named(tmp_path, content, words):
    (tmp_path / "empty.txt").write_bytes(content)
    err = refused("train", "text-file", "--dry-run", *sets(f"data={tmp_path / 'empty.txt'}"))
    for w in words:
        assert w in err and "empty.txt" in err, err


def test_an_image_folder_that_is_a_file_and_a_csv_without_names_are_said(tmp_path):
    (tmp_path / "img.png").write_bytes(b"not a folder")
    assert "img.png is a file; give a folder" in refused("train", "image-folder", "--dry-run",
                                                         *sets(f"data={tmp_path / 'img.png'}"))
    write_csv(tmp_path / "headless.csv", "1.5,2", [f"{i % 7}.5,{i}" for i in range(2000)])
    r = pillars("train", "weather-lstm", "--dry-run", *sets(f"data={tmp_path / 'headless.csv'}", "column=0"),
                check=False)
    assert "the first line of" in " ".join(r.stderr.split()) and "if it is data, add a line of names" in \
        " ".join(r.stderr.split())
