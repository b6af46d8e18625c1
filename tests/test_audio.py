"""The WAV front end: MFCCs as librosa computes them at the same settings, on the scale of the packaged
spoken digits for real recordings of another speaker, and clear errors for files it cannot read."""
import numpy as np
import pytest
from scipy.io import wavfile

from pillars import data
from pillars.data.audio import MFCCSettings, mfcc, read_wav, wav_folder, wav_mfcc
from pillars.data.registry import InputFileError


@pytest.fixture(scope="module")
def spoken_numbers():
    """The ten spokennumbers recordings, 0.wav ... 9.wav (16-bit stereo at 44.1 kHz)."""
    return data.fetch("spoken-numbers")


def test_mfcc_is_librosas_at_the_same_settings(spoken_numbers):
    """librosa's mel spectrogram, decibels and DCT, set as torchaudio's MFCC defaults (which made the
    packaged frames: see pillars.data.audio), on a real recording."""
    import librosa
    s, x = MFCCSettings(), read_wav(spoken_numbers["7.wav"]).astype(np.float64)
    mel = librosa.feature.melspectrogram(y=x, sr=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop, window="hann",
                                         center=True, pad_mode="reflect", power=2.0, n_mels=s.n_mels, htk=True,
                                         norm=None, fmin=0.0, fmax=s.sample_rate / 2)
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=s.top_db)
    expected = librosa.feature.mfcc(S=db, n_mfcc=s.n_mfcc, dct_type=2, norm="ortho").T
    got = mfcc(x, s)
    assert got.shape == expected.shape == (1 + len(x) // s.hop, 13)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)   # float32 output of values up to ~500


def test_recordings_of_another_speaker_are_on_the_packaged_scale(spoken_numbers):
    """Per coefficient, the ten recordings' mean lies within one packaged standard deviation of the packaged
    mean, and their spread within a factor of 2 of the packaged spread. Why one standard deviation: a new
    voice and microphone shift the means (these recordings are about 10 dB louder than FSDD's), and each of
    FSDD's own six speakers (100 recordings of each, the same front end) lies 0.63 to 1.19 deviations from the
    pooled mean at its farthest coefficient; these ten lie 0.88 (coefficient 7). Front ends with a mistake,
    measured on these ten: samples not scaled to [-1, 1] 7.7, not resampled from 44.1 kHz 2.8, the magnitude
    instead of the power spectrum 1.38 (and spreads of 0.39 to 0.56), librosa's own MFCC defaults 1.08."""
    frames = data.load("spoken-digits")["frames"]
    mean, std = frames.mean(0), frames.std(0)
    ours = np.concatenate([wav_mfcc(spoken_numbers[f"{d}.wav"]) for d in range(10)])
    assert ours.shape[1] == 13
    assert np.all(np.abs(ours.mean(0) - mean) < std), (ours.mean(0) - mean) / std
    assert np.all((ours.std(0) > std / 2) & (ours.std(0) < 2 * std)), ours.std(0) / std


def test_read_wav_takes_each_pcm_format_channels_and_rate(tmp_path, spoken_numbers):
    """8-, 16- and 32-bit PCM and float samples give the same signal; two channels are averaged; a file at
    16 kHz is resampled to 8 kHz."""
    rate, stereo = wavfile.read(spoken_numbers["3.wav"])
    reference = read_wav(spoken_numbers["3.wav"])
    assert rate == 44100 and stereo.ndim == 2
    assert len(reference) == -(-len(stereo) * 80 // 441)   # 8000 / 44100 of the samples, rounded up
    x = reference.astype(np.float64)
    for name, samples, atol in (("u8", np.round(x * 127 + 128).astype(np.uint8), 1 / 64),
                                ("i16", np.round(x * 32767).astype(np.int16), 1e-4),
                                ("i32", np.round(x * 2147483647).astype(np.int32), 1e-6),
                                ("f32", x.astype(np.float32), 1e-7),
                                ("stereo", np.stack([x, x], 1).astype(np.float32), 1e-7)):
        wavfile.write(tmp_path / f"{name}.wav", 8000, samples)
        np.testing.assert_allclose(read_wav(tmp_path / f"{name}.wav"), x, rtol=0, atol=atol, err_msg=name)
    t = np.arange(16000) / 16000
    wavfile.write(tmp_path / "tone.wav", 16000, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    tone = read_wav(tmp_path / "tone.wav")
    assert len(tone) == 8000
    assert abs(np.argmax(np.abs(np.fft.rfft(tone))) - 440) <= 1   # 1 Hz bins: still 440 Hz


def test_files_that_cannot_be_read_say_why(tmp_path):
    mp3 = tmp_path / "clip.mp3"
    mp3.write_bytes(b"ID3\x04\x00" + bytes(200))
    with pytest.raises(InputFileError, match="clip.mp3 is not a WAV file.*ffmpeg"):
        read_wav(mp3)
    with pytest.raises(InputFileError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(InputFileError, match="is a folder"):
        read_wav(tmp_path)
    wavfile.write(tmp_path / "short.wav", 8000, np.full(100, 1000, dtype=np.int16))
    with pytest.raises(InputFileError, match=r"short.wav holds 0.013 s of audio; a clip needs at least 0.05 s"):
        wav_mfcc(tmp_path / "short.wav")
    wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, dtype=np.int16))
    with pytest.raises(InputFileError, match="empty.wav holds 0.000 s"):
        read_wav(tmp_path / "empty.wav")
    wavfile.write(tmp_path / "silent.wav", 8000, np.zeros(4000, dtype=np.int16))
    with pytest.raises(InputFileError, match="silent.wav is silent"):
        read_wav(tmp_path / "silent.wav")
    mulaw = bytearray((tmp_path / "silent.wav").read_bytes())
    mulaw[20:22] = (7).to_bytes(2, "little")   # the format code of G.711 mu-law, a compressed format
    (tmp_path / "mulaw.wav").write_bytes(bytes(mulaw))
    with pytest.raises(InputFileError, match="mulaw.wav is a WAV file whose sample format is not read here"):
        read_wav(tmp_path / "mulaw.wav")


def test_a_folder_of_wav_files_refuses_what_it_would_leave_out(tmp_path, spoken_numbers):
    with pytest.raises(InputFileError, match="does not exist"):
        wav_folder(tmp_path / "none")
    with pytest.raises(InputFileError, match="at least two class sub-folders"):
        wav_folder(tmp_path)
    for c in ("zero", "one"):
        (tmp_path / c).mkdir()
        for k in range(3):
            (tmp_path / c / f"{k}.wav").write_bytes(spoken_numbers[f"{int(c == 'one')}.wav"].read_bytes())
    recordings, labels, classes = wav_folder(tmp_path, fewest=3)
    assert classes == ["one", "zero"] and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(r.shape[1] == 13 for r in recordings)
    with pytest.raises(InputFileError, match=r"folder .*one holds 3 WAV file\(s\); each class needs at least 6"):
        wav_folder(tmp_path, fewest=6)
    (tmp_path / "zero" / "notes.txt").write_text("take 2")
    with pytest.raises(InputFileError, match=r"notes.txt is not a .wav file"):
        wav_folder(tmp_path, fewest=3)
    (tmp_path / "zero" / "notes.txt").unlink()
    (tmp_path / "loose.wav").write_bytes(b"")
    with pytest.raises(InputFileError, match="outside every class folder"):
        wav_folder(tmp_path, fewest=3)
