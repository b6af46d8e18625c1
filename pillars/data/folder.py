"""A user's own images: a folder of class sub-folders (or train/ and test/ each holding them), and single
image files for prediction. Any size and mode that Pillow reads; transparency is laid on white."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pillars.data.registry import DataError
from pillars.data.vision import stratified_split

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def open_image(path: Path):
    """The image at `path` as an RGB Pillow image, upright, transparency composited on white."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e}). Give a PNG or JPEG file, "
                        "or remove this file from the folder.") from None
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


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


def _class_folders(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file())
        if files:
            classes[d.name] = files
    return classes


def load_image_folder(root: str | Path, size: int, channels: int = 0,
                      test_fraction: float = 0.2) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays like the registered datasets' (train_x, train_y, test_x, test_y) and the class names.
    `channels` 0 picks 1 when every image is grey, else 3. Without train/ and test/ sub-folders, a fixed
    stratified `test_fraction` of each class is held out for the test. (The task holds its validation
    images out of the training arrays, as it does for every image dataset.)"""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; give a folder of class sub-folders, e.g. "
                        f"--set data=photos/ with photos/cat/*.jpg and photos/dog/*.jpg")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    parts = {"train": _class_folders(root / "train"), "test": _class_folders(root / "test")} if split \
        else {"all": _class_folders(root)}
    classes = sorted(set().union(*parts.values()))
    if len(classes) < 2:
        raise DataError(f"{root} needs at least two class sub-folders holding images "
                        f"({', '.join(sorted(EXTENSIONS))}); found {classes or 'none'}")
    arrays = {}
    for part, folders in parts.items():
        images, labels = [], []
        for c, files in folders.items():
            for f in files:
                images.append(to_array(open_image(f), size, 3))
                labels.append(classes.index(c))
        arrays[part] = (np.stack(images), np.array(labels, dtype=np.int64))
    if channels == 0:
        every = np.concatenate([x for x, _ in arrays.values()])
        channels = 1 if (np.all(every[..., 0] == every[..., 1]) and np.all(every[..., 1] == every[..., 2])) else 3
    for part, (x, y) in arrays.items():
        arrays[part] = (x[..., 0] if channels == 1 else x, y)
    if split:
        (tr_x, tr_y), (te_x, te_y) = arrays["train"], arrays["test"]
        out = {"train_x": tr_x, "train_y": tr_y, "test_x": te_x, "test_y": te_y}
    else:
        x, y = arrays["all"]
        tr, te = stratified_split(y, test_fraction)
        if len(te) == 0 or len(tr) == 0:
            raise DataError(f"{root} has too few images to hold out {test_fraction:.0%} for testing; add images "
                            "or give train/ and test/ sub-folders")
        out = {"train_x": x[tr], "train_y": y[tr], "test_x": x[te], "test_y": y[te]}
    return out, classes
