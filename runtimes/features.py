"""Whisper log-mel features in numpy, equal to transformers' `WhisperFeatureExtractor`.

Padding convention (one for teacher, student and runtime):
  * The waveform is what gets padded, with zeros, never the mel. `log_mel(audio, pad_to_30s=True)` is exactly
    `WhisperFeatureExtractor()(audio)` (the teacher's input, 3000 frames).
  * `log_mel(audio, pad_to_30s=False)` is the same computation on the unpadded waveform
    (`len(audio) // 160` frames): the student's length-proportional input. Its frames equal the padded
    version's except the last one or two (the STFT's reflect padding at the end and the global max used
    for the dynamic-range floor can differ), so a student never sees 30 s of silence it has to skip.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_SAMPLES_30S = 30 * SAMPLE_RATE
N_FRAMES_30S = N_SAMPLES_30S // HOP_LENGTH


def _hz_to_mel_slaney(freq: np.ndarray) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels = np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), mels)
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), freq)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters, shape (n_fft // 2 + 1, n_mels), as librosa/Whisper."""
    n_bins = n_fft // 2 + 1
    mel_points = np.linspace(_hz_to_mel_slaney(0.0), _hz_to_mel_slaney(sample_rate / 2), n_mels + 2)
    filter_freqs = _mel_to_hz_slaney(mel_points)
    fft_freqs = np.linspace(0, sample_rate // 2, n_bins)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels]))[None, :]
    return filters.astype(np.float32)


@lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def log_mel(audio: np.ndarray, pad_to_30s: bool = True, n_mels: int = 80) -> np.ndarray:
    """Whisper log-mel spectrogram of 16 kHz mono audio, shape (n_mels, frames), float32.

    pad_to_30s=True: zero-pad (or cut) the waveform to 30 s first -> 3000 frames (the teacher's input).
    pad_to_30s=False: unpadded -> len(audio) // 160 frames (the student's input).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel expects mono audio (1-D), got shape {audio.shape}")
    if pad_to_30s:
        if len(audio) >= N_SAMPLES_30S:
            audio = audio[:N_SAMPLES_30S]
        else:
            audio = np.pad(audio, (0, N_SAMPLES_30S - len(audio)))
    if len(audio) < HOP_LENGTH:
        audio = np.pad(audio, (0, HOP_LENGTH - len(audio)))
    half = N_FFT // 2
    padded = np.pad(audio, (half, half), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _hann_window(), n=N_FFT, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filters(n_mels)
    log_spec = np.log10(np.maximum(mel, 1e-10)).T[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
