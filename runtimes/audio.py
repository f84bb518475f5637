"""Audio loading for the device side: any file soundfile decodes, downmixed and resampled to 16 kHz.

Only numpy, soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3) and soxr (a high-quality polyphase
resampler with small aarch64 wheels) are needed, so this runs on a Raspberry Pi without torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def checked_audio_path(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path if it names a non-empty file, else a one-line AudioError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: audio file not found; check the path")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: audio file is empty (0 bytes); re-record or re-export it")
    return p


def _decode_error(p: Path, exc: Exception) -> AudioError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return AudioError(
        f"{p}: cannot decode audio ({detail}); the file is corrupt or not wav/flac/ogg/mp3 - "
        "convert it, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
    )


def stream_audio(
    path: str | os.PathLike[str], block_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a file at `sample_rate`, decoded and resampled block by block, so memory does not
    grow with the file: an hour of 48 kHz stereo is ~1.4 GB as float32 when read whole. Same errors as
    load_audio, raised before the first block."""
    import soundfile as sf

    p = checked_audio_path(path)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _decode_error(p, exc) from None
    if info.frames == 0:
        raise AudioError(f"{p}: audio file has no samples; re-record or re-export it")
    return _blocks(p, int(info.samplerate), block_seconds, sample_rate)


def _blocks(p: Path, rate: int, block_seconds: float, sample_rate: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    resampler = None
    if rate != sample_rate:
        import soxr

        resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
    try:
        for block in sf.blocks(str(p), blocksize=max(1, int(block_seconds * rate)), dtype="float32", always_2d=True):
            mono = to_mono(block)
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{p}: audio contains NaN or infinite samples; the file is corrupt")
            yield mono if resampler is None else resampler.resample_chunk(mono)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _decode_error(p, exc) from None
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at `sample_rate`.

    Raises AudioError (one line, naming the file and what to do) for missing, empty, corrupt or
    undecodable files.
    """
    import soundfile as sf

    p = checked_audio_path(path)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _decode_error(p, exc) from None
    if data.size == 0:
        raise AudioError(f"{p}: audio file has no samples; re-record or re-export it")
    audio = to_mono(np.asarray(data, dtype=np.float32))
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{p}: audio contains NaN or infinite samples; the file is corrupt")
    return resample(audio, int(sr), sample_rate)
