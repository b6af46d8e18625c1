"""A user's own images: a folder of class sub-folders (or train/ and test/ each holding them), and single
image files for prediction. Any size, mode and bit depth that Pillow reads, up to Pillow's pixel limit;
transparency is laid on white."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from pillars.data.registry import InputFileError
from pillars.data.vision import stratified_split

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "test")
# names of split folders in other spellings (Kaggle's training_set/ and test_set/, Train/ and Test/): two of
# them side by side are splits, not classes
SPLIT_LIKE = {"train", "training", "trainset", "train_set", "training_set", "test", "testing", "testset",
              "test_set", "val", "valid", "validation", "dev"}


RESIZE = "resize it (it is resized to the model's input anyway)"


def open_image(path: Path, too_large: str = RESIZE):
    """The image at `path` as an 8-bit RGB Pillow image, upright, transparency composited on white. Images
    over Pillow's pixel limit (`Image.MAX_IMAGE_PIXELS`, 89 million) are refused before they are decoded: a
    small file can hold a huge image (a decompression bomb); `too_large` is the fix the message offers."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not an image file; give PNG or JPEG files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)   # Pillow only warns up to twice the limit
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(pixels[1]):,} pixels, " if pixels else ""
        raise InputFileError(f"{path} is too large: {size}more than the limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                             f"that guards against decompression bombs; {too_large}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        why = "the file is cut short: copy it again" if "truncated" in str(e) else f"{type(e).__name__}: {e}"
        raise InputFileError(f"{path} is not a readable image ({why}). Give a PNG or JPEG file") from None
    im = _eight_bit(im, path)
    if im.has_transparency_data:
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def _eight_bit(im, path: Path):
    """An image of 16-bit, 32-bit integer or floating-point grey levels as 8-bit grey, scaled from the range
    of its kind (Pillow's own conversion clips them at 255: a 16-bit image turns all white). 16-bit pixels
    (modes I;16*, and mode I from a 16-bit file) span 0..65535; floating-point ones 0..1, or 0..255 when
    any is above 1. Other ranges are refused, not guessed."""
    from PIL import Image
    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return im
    pixels = np.asarray(im, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if im.mode == "F":
        if not np.all(np.isfinite(pixels)):
            raise InputFileError(f"{path}: some of its floating-point pixels are NaN or infinite; save the image "
                                 "with finite grey levels, or as an 8- or 16-bit PNG")
        top = 1.0 if high <= 1 else 255.0
        kind = "floating-point pixels, read as 0..1 or 0..255"
    else:
        top, kind = 65535.0, "integer pixels, read as 16-bit (0..65535)"
    if low < 0 or high > top:
        raise InputFileError(f"{path}: {kind}, but they run from {low:g} to {high:g}; save it as an 8- or "
                             "16-bit PNG")
    return Image.fromarray(np.round(pixels * (255 / top)).astype(np.uint8))


def to_array(im, size: int, channels: int) -> np.ndarray:
    """The centre square of the image resized to `size` x `size` uint8 pixels, (H, W) for one channel or
    (H, W, 3)."""
    from PIL import Image, ImageOps
    im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
    if channels == 1:
        im = im.convert("L")
    return np.asarray(im, dtype=np.uint8).copy()


def as_fashion_mnist(im, size: int, invert: str = "auto") -> tuple[np.ndarray, bool]:
    """A photo of one object converted much as Fashion-MNIST's images were made from product shots (Xiao
    et al. 2017, sect. 2): trim the edges close to the colour of the corner pixels (5% threshold; the paper
    measures RGB distance, here the largest channel difference), resize the longest edge to `size`
    (Lanczos, where the paper subsamples), sharpen, extend the shorter edge to `size` with the object
    centred, convert to grey and negate when the background is light (`invert` "auto"; "yes"/"no" force
    it); then stretch the grey levels so that the background is black, as in the training images. Used
    for every light-on-dark dataset (MNIST's digits were centred differently, in a 20x20 box). Returns
    (size, size) uint8 pixels and whether they were negated."""
    from PIL import Image, ImageFilter
    im = im.convert("RGB")
    rgb = np.asarray(im, dtype=np.int16)
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    background = np.median(corners, 0).round().astype(np.int16)
    foreground = np.abs(rgb - background).max(-1) > round(0.05 * 255)
    rows, cols = np.flatnonzero(foreground.any(1)), np.flatnonzero(foreground.any(0))
    if len(rows) and len(cols):
        im = im.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
    scale = size / max(im.size)
    im = im.resize(tuple(max(1, round(side * scale)) for side in im.size), Image.Resampling.LANCZOS)
    colour = tuple(int(v) for v in background)
    canvas = Image.new("RGB", (size, size), colour)
    canvas.paste(im.filter(ImageFilter.SHARPEN), ((size - im.width + 1) // 2, (size - im.height + 1) // 2))
    grey = np.asarray(canvas.convert("L"), dtype=np.float32)
    level = float(np.asarray(Image.new("RGB", (1, 1), colour).convert("L"))[0, 0])   # the background's grey
    negate = invert == "yes" or (invert == "auto" and level > 127.5)
    if negate:
        grey, level = 255 - grey, 255 - level
    if level <= 127.5:   # a dark background: stretch its level to black (forced the other way: leave it)
        grey = (grey - level).clip(0) * (255 / (255 - level))
    return grey.round().astype(np.uint8), negate


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file()
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))


def _no_loose_images(root: Path) -> None:
    loose = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
    if loose:
        raise InputFileError(f"{loose[0]} is not in a class folder; put each image in the sub-folder named after "
                             f"its class ({root / 'CLASS' / loose[0].name})")


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Each class sub-folder of `root` and its images (in nested folders too). An image outside every class
    folder, or a class folder without images, is an error: it would be left out without a word."""
    _no_loose_images(root)
    classes = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[d.name] = _image_files(d)
        if not classes[d.name]:
            raise InputFileError(f"class folder {d} holds no images ({', '.join(sorted(EXTENSIONS))}); add its "
                                 "images, or remove the folder")
    return classes


def _split_folders(root: Path, test_fraction: float) -> dict[str, dict[str, list[Path]]]:
    """{"train": ..., "test": ...} of a folder with train/ (and test/) sub-folders; the test classes must be
    training classes. Any other sub-folder holding images is refused: its images would be left out."""
    _no_loose_images(root)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SPLITS and not p.name.startswith(".")):
        if not _image_files(d):
            continue
        if d.name.lower() in ("valid", "val", "validation", "dev"):
            raise InputFileError(f"{d}: the validation images are always a stratified valid_fraction of each class "
                                 f"of train/, so this folder's images would be left out; move them into "
                                 f"{root / 'train'}/CLASS/, or remove the folder")
        raise InputFileError(f"{d} is neither train/ nor test/, so its images would be left out; move them into "
                             f"{root / 'train'}/CLASS/ or {root / 'test'}/CLASS/, or remove the folder")
    if not (root / "train").is_dir():
        raise InputFileError(f"{root} has test/ but no train/; put the training images in {root / 'train'}/CLASS/")
    parts = {part: _class_folders(root / part) for part in SPLITS if (root / part).is_dir()}
    trained = sorted(parts["train"])
    if "test" in parts and not parts["test"]:
        raise InputFileError(f"{root / 'test'} holds no class folders; put the test images in "
                             f"test/CLASS/ for the classes of train/ ({', '.join(trained)}), or remove test/ to "
                             f"hold {test_fraction:.0%} of train/ out for the test (--set test_fraction)")
    for c in sorted(set(parts.get("test", {})) - set(trained)):
        alike = [t for t in trained if t.lower() == c.lower()]
        hint = f" (train/{alike[0]} differs only in case: rename one)" if alike else ""
        raise InputFileError(f"test class {root / 'test' / c} is not a training class{hint}; the classes of "
                             f"train/ are {', '.join(trained)}. The model can only answer classes it trained on: "
                             "rename the folder or add its training images to train/")
    return parts


def _read_images(folders: dict[str, list[Path]], classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for c, files in folders.items():
        for f in files:
            try:
                images.append(to_array(open_image(f), size, 3))
            except InputFileError as e:
                raise InputFileError(f"{e}, or remove it from the folder") from None
            labels.append(classes.index(c))
    return np.stack(images), np.array(labels, dtype=np.int64)


def load_image_folder(root: str | Path, size: int, channels: int = 0,
                      test_fraction: float = 0.2) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays like the registered datasets' (train_x, train_y, test_x, test_y) and the class names.
    `channels` 0 picks 1 when every image is grey, else 3. Without a test/ sub-folder, a fixed stratified
    `test_fraction` of each class (of DIR, or of DIR/train) is held out for the test. (The task holds its
    validation images out of the training arrays, as it does for every image dataset.)"""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise InputFileError(f"image folder {root} {what}; give a folder of class sub-folders, e.g. "
                             f"--set data=photos/ with photos/cat/*.jpg and photos/dog/*.jpg")
    split = any((root / part).is_dir() for part in SPLITS)
    like = sorted(d.name for d in root.iterdir() if d.is_dir() and re.sub(r"[- ]", "_", d.name.lower()) in SPLIT_LIKE)
    if not split and len(like) >= 2:   # with train/ or test/ there, any other folder is refused by _split_folders
        raise InputFileError(f"{root}: {', '.join(like)} look like split folders (training, validation, test), "
                             "not classes; name them train/ and test/ (lower case), each holding CLASS/ sub-folders "
                             "(the validation images are held out of train/)")
    parts = _split_folders(root, test_fraction) if split else {"train": _class_folders(root)}
    classes = sorted(parts["train"])
    if len(classes) < 2:
        raise InputFileError(f"{root / 'train' if split else root} needs at least two class sub-folders holding "
                             f"images ({', '.join(sorted(EXTENSIONS))}); found {classes or 'none'}")
    arrays = {part: _read_images(folders, classes, size) for part, folders in parts.items()}
    if channels == 0:
        every = np.concatenate([x for x, _ in arrays.values()])
        channels = 1 if (np.all(every[..., 0] == every[..., 1]) and np.all(every[..., 1] == every[..., 2])) else 3
    for part, (x, y) in arrays.items():
        arrays[part] = (x[..., 0] if channels == 1 else x, y)
    if "test" in arrays:
        (tr_x, tr_y), (te_x, te_y) = arrays["train"], arrays["test"]
        return {"train_x": tr_x, "train_y": tr_y, "test_x": te_x, "test_y": te_y}, classes
    x, y = arrays["train"]
    tr, te = stratified_split(y, test_fraction)
    if len(te) == 0 or len(tr) == 0:
        raise InputFileError(f"{root} has too few images to hold out {test_fraction:.0%} for testing; add images "
                             "or give train/ and test/ sub-folders")
    return {"train_x": x[tr], "train_y": y[tr], "test_x": x[te], "test_y": y[te]}, classes
