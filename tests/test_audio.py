import numpy as np
import pytest
import soundfile as sf

from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.errors import AudioError


def _tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(audio: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("fmt", "subtype", "sr"),
    [
        ("WAV", "PCM_16", 16000),
        ("WAV", "PCM_16", 8000),
        ("FLAC", "PCM_24", 44100),
        ("OGG", "VORBIS", 48000),
        ("MP3", "MPEG_LAYER_III", 22050),
    ],
)
def test_load_any_format_and_rate_to_16k_mono(tmp_path, fmt, subtype, sr):
    stereo = np.stack([_tone(sr, 1.0), _tone(sr, 1.0)], axis=1)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, stereo, sr, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 1200  # mp3 adds encoder delay/padding
    assert abs(_dominant_hz(audio) - 440.0) < 3.0
    assert 0.3 < np.abs(audio).max() <= 0.6


def test_resampling_is_band_limited(tmp_path):
    # A 12 kHz tone must vanish when going to 16 kHz (Nyquist 8 kHz), not alias down to 4 kHz.
    sr = 48000
    path = tmp_path / "high.wav"
    sf.write(path, _tone(sr, 1.0, 12000.0), sr)
    audio = load_audio(path)
    assert np.sqrt(np.mean(audio**2)) < 1e-3


def test_downmix_averages_channels(tmp_path):
    sr = 16000
    left, right = _tone(sr, 0.5), np.zeros(sr // 2, dtype=np.float32)
    path = tmp_path / "lr.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-6)


def test_real_clip_loads(real_clip):
    audio = load_audio(real_clip("jfk"))
    assert abs(len(audio) / 16000 - 11.0) < 0.1


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: audio file not found"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: audio file is empty"):
        load_audio(p)


def test_wav_without_samples(tmp_path):
    p = tmp_path / "nosamples.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(p)


def test_corrupt_file_is_one_line(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    with pytest.raises(AudioError) as info:
        load_audio(p)
    msg = str(info.value)
    assert "corrupt.wav" in msg and "cannot decode audio" in msg and "\n" not in msg


def test_unsupported_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not audio")
    with pytest.raises(AudioError, match=r"notes\.txt: cannot decode audio"):
        load_audio(p)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)
