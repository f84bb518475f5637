"""Audio loading for the device side: any file soundfile decodes, downmixed and resampled to 16 kHz.

Only numpy, soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3) and soxr (a high-quality polyphase
resampler with small aarch64 wheels) are needed, so this runs on a Raspberry Pi without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16_000


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float32 signal with soxr's high-quality (band-limited) filter."""
    if orig_sr <= 0:
        raise AudioError(f"invalid sample rate {orig_sr} Hz")
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio.astype(np.float32, copy=False), orig_sr, target_sr, quality="HQ").astype(
        np.float32, copy=False
    )


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; a 1-D array is returned unchanged."""
    if audio.ndim == 1:
        return audio
    return audio.mean(axis=1, dtype=np.float32)


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at `sample_rate`.

    Raises AudioError (one line, naming the file and what to do) for missing, empty, corrupt or
    undecodable files.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: audio file not found; check the path")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: audio file is empty (0 bytes); re-record or re-export it")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(
            f"{p}: cannot decode audio ({detail}); the file is corrupt or not wav/flac/ogg/mp3 - "
            "convert it, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
        ) from None
    if data.size == 0:
        raise AudioError(f"{p}: audio file has no samples; re-record or re-export it")
    audio = to_mono(np.asarray(data, dtype=np.float32))
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{p}: audio contains NaN or infinite samples; the file is corrupt")
    return resample(audio, int(sr), sample_rate)
