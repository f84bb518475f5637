"""Whisper log-mel features in numpy, equal to transformers' `WhisperFeatureExtractor`.

Padding convention (one for teacher, student and runtime):
  * The waveform is what gets padded, with zeros, never the mel. `log_mel(audio, pad_to_30s=True)` is exactly
    `WhisperFeatureExtractor()(audio)` (the teacher's input, 3000 frames).
  * `log_mel(audio, pad_to_30s=False)` is the same computation on the unpadded waveform
    (`len(audio) // 160` frames): the student's length-proportional input. Its frames equal the padded
    version's except the last one or two (the STFT's reflect padding at the end and the global max used
    for the dynamic-range floor can differ), so a student never sees 30 s of silence it has to skip.
  * The tail margin (`tail_frames`): a student's unpadded waveform gets `tail_frames` encoder frames of zeros
    (320 samples = 20 ms each) appended before the mel. Whisper decides when a sentence is over from what
    follows the speech; with no silence after it, a model trained on 30 s windows repeats its sentence instead
    of stopping (whisper.cpp `audio_ctx`, FUTO's audio-context fine-tune keeps >= 32 extra frames). One number,
    stored in the student's config.json (`edge_askd_tail_frames`) and the export manifest (`mel.tail_frames`),
    and applied by training, the parity gate, the runtime and the live path through this function only.
  * The minimum context (`min_frames`): the same zeros go on until the input is at least `min_frames` encoder
    frames long. A one-word clip plus the tail is ~2 s of context where the teacher always saw 30 s; short
    clips are where a dynamic-context student still misreads ("rear right" -> "we are right"). Stored beside
    the tail margin (`edge_askd_min_frames`, `mel.min_frames`; 0 for exports from before it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_SAMPLES_30S = 30 * SAMPLE_RATE
N_FRAMES_30S = N_SAMPLES_30S // HOP_LENGTH
ENCODER_FRAME_SAMPLES = 2 * HOP_LENGTH  # conv2 has stride 2: one encoder frame per two mel frames (20 ms)
MAX_TAIL_FRAMES = 100  # 2 s: with the runtime's 28 s chunks the input stays inside the 30 s positional table
MAX_MIN_FRAMES = N_SAMPLES_30S // ENCODER_FRAME_SAMPLES  # 1500: a minimum context of 30 s is the padded window


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


@lru_cache(maxsize=4)
def _mel_bands(n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bins, weights, starts): each filter's non-zero FFT bins and weights, concatenated filter after filter, and
    where each filter's run starts. Every Whisper filter is one contiguous band of >= 1 bin (80 and 128 mels)."""
    filters = mel_filters(n_mels)
    bins = [np.flatnonzero(filters[:, m]) for m in range(n_mels)]
    if any(len(b) == 0 for b in bins):
        raise ValueError(f"a {n_mels}-band mel filterbank has an empty filter")
    starts = np.cumsum([0] + [len(b) for b in bins[:-1]])
    flat = np.concatenate(bins)
    return flat, filters[flat, np.repeat(np.arange(n_mels), [len(b) for b in bins])], starts


def _apply_mel(power: np.ndarray, n_mels: int) -> np.ndarray:
    """power [T, bins] @ mel_filters(n_mels), as a sum over each filter's few bins (~5 of 201) instead of a matrix
    product. The product is the only BLAS call of a transcription, and OpenBLAS's threads keep spinning for a
    while after it, on the cores the encoder is about to use: measured (base student, OpenVINO int8, 10 s, 2
    cores) the encoder took 129 ms after the product and 74-88 ms after this sum, which costs ~3 ms more."""
    bins, weights, starts = _mel_bands(n_mels)
    return np.add.reduceat(power[:, bins] * weights, starts, axis=1)


@lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def with_tail(audio: np.ndarray, tail_frames: int, min_frames: int = 0) -> np.ndarray:
    """`audio` followed by `tail_frames` encoder frames of zeros (the tail margin), and by more zeros up to
    `min_frames` encoder frames in all (the minimum context); never longer than 30 s."""
    if not 0 <= tail_frames <= MAX_TAIL_FRAMES:
        raise ValueError(f"tail_frames {tail_frames} must be within [0, {MAX_TAIL_FRAMES}]")
    if not 0 <= min_frames <= MAX_MIN_FRAMES:
        raise ValueError(f"min_frames {min_frames} must be within [0, {MAX_MIN_FRAMES}]")
    pad = max(tail_frames * ENCODER_FRAME_SAMPLES, min_frames * ENCODER_FRAME_SAMPLES - len(audio))
    pad = min(pad, max(N_SAMPLES_30S - len(audio), 0))
    return np.pad(audio, (0, pad)) if pad else audio


def log_mel(
    audio: np.ndarray, pad_to_30s: bool = True, n_mels: int = 80, tail_frames: int = 0, min_frames: int = 0
) -> np.ndarray:
    """Whisper log-mel spectrogram of 16 kHz mono audio, shape (n_mels, frames), float32.

    pad_to_30s=True: zero-pad (or cut) the waveform to 30 s first -> 3000 frames (the teacher's input).
    pad_to_30s=False: unpadded plus the tail margin -> (len(audio) + 320 * tail_frames) // 160 frames (the
    student's input).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel expects mono audio (1-D), got shape {audio.shape}")
    if not pad_to_30s:
        audio = with_tail(audio, tail_frames, min_frames)
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
    mel = _apply_mel(power, n_mels)
    log_spec = np.log10(np.maximum(mel, 1e-10)).T[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
