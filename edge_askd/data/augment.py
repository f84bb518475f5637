"""On-the-fly augmentation: pure functions of (audio, parameters, numpy Generator); nothing is modified in place.

All audio is float32 mono at 16 kHz unless stated. Pass `np.random.default_rng(seed)` for reproducibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_askd_runtime.audio import SAMPLE_RATE, resample
from edge_askd_runtime.errors import EdgeAskdError


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def coloured_noise(n: int, rng: np.random.Generator, exponent: float = 0.0) -> np.ndarray:
    """Unit-power noise with a 1/f**exponent power spectrum: 0 white, 1 pink, 2 brown, -1 blue."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2.0)
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(max(_power(noise), 1e-20))).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix `noise` (looped and randomly offset to the audio's length) so that speech/noise power = snr_db."""
    if len(noise) == 0 or _power(noise) == 0:
        raise EdgeAskdError("noise recording is silent or empty; pick another noise file")
    reps = int(np.ceil(len(audio) / len(noise))) + 1
    start = int(rng.integers(0, len(noise)))
    segment = np.tile(noise, reps)[start : start + len(audio)]
    scale = np.sqrt(_power(audio) / (_power(segment) * 10 ** (snr_db / 10)))
    return (audio + scale * segment).astype(np.float32)


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    """Scale by `db` decibels, clipped to [-1, 1] as a real ADC would."""
    return np.clip(audio * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: play `factor` times faster (tempo and pitch change; length / factor)."""
    if factor <= 0:
        raise EdgeAskdError(f"speed factor {factor} must be positive (typical: 0.9, 1.0, 1.1)")
    # Resampling from rate r*factor to r keeps every sample but plays them factor times faster.
    return resample(audio, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def telephone(audio: np.ndarray, narrowband_rate: int = 8000) -> np.ndarray:
    """Band-limit as a phone line does: 16 kHz -> 8 kHz -> 16 kHz (nothing above ~4 kHz survives)."""
    return resample(resample(audio, SAMPLE_RATE, narrowband_rate), narrowband_rate, SAMPLE_RATE)[: len(audio)]


@dataclass(frozen=True)
class RoomConfig:
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds, drawn uniformly
    size: tuple[tuple[float, float], ...] = ((3.0, 10.0), (3.0, 10.0), (2.4, 4.0))  # metres (x, y, z)


def reverb(audio: np.ndarray, rng: np.random.Generator, config: RoomConfig | None = None) -> tuple[np.ndarray, float]:
    """Simulate a random shoebox room (pyroomacoustics' image-source method); returns (audio, rt60 drawn).

    The output keeps the input's length (the reverberant tail past it is cut) and its RMS level.
    """
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise EdgeAskdError("reverb needs pyroomacoustics; install it with `pip install edge-askd[data]`") from None
    cfg = config or RoomConfig()
    dims = np.array([rng.uniform(lo, hi) for lo, hi in cfg.size])
    rt60 = float(rng.uniform(*cfg.rt60))
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 20))
    room.add_source(rng.uniform(0.5, dims - 0.5), signal=audio.astype(np.float64))
    room.add_microphone(rng.uniform(0.5, dims - 0.5))
    room.simulate()
    wet = room.mic_array.signals[0]
    delay = int(np.argmax(np.abs(room.rir[0][0])))  # align the direct path with the dry signal
    wet = wet[delay : delay + len(audio)]
    wet = np.pad(wet, (0, len(audio) - len(wet)))
    wet *= np.sqrt(_power(audio) / max(_power(wet), 1e-20))
    return wet.astype(np.float32), rt60


def spec_augment(
    mel: np.ndarray,
    rng: np.random.Generator,
    freq_masks: int = 2,
    freq_width: int = 27,
    time_masks: int = 2,
    time_width_ratio: float = 0.05,
) -> np.ndarray:
    """SpecAugment (Park et al. 2019) masks on a (n_mels, frames) log-mel; masked cells take the mel's mean,
    which for Whisper's normalised log-mel is close to silence rather than an out-of-range value."""
    out = mel.copy()
    fill = float(mel.mean())
    n_mels, frames = mel.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, freq_width + 1))
        f0 = int(rng.integers(0, max(n_mels - w, 1)))
        out[f0 : f0 + w, :] = fill
    max_t = max(int(frames * time_width_ratio), 1)
    for _ in range(time_masks):
        w = int(rng.integers(0, max_t + 1))
        t0 = int(rng.integers(0, max(frames - w, 1)))
        out[:, t0 : t0 + w] = fill
    return out


def load_noise_bank(path: str | Path, categories: tuple[str, ...] | None = None) -> list[np.ndarray]:
    """Pieces of the real-noise bank (`edge-askd data noise`) as 16 kHz mono float32, in manifest order.

    `path` is the bank's folder or its manifest; `categories` picks some of music, effects, noise, babble."""
    from edge_askd_runtime.audio import load_audio

    from .manifest import read_manifest
    from .noise_bank import CATEGORIES, MANIFEST

    p = Path(path)
    manifest = p / MANIFEST if p.is_dir() else p
    if not manifest.is_file():
        raise EdgeAskdError(f"{manifest}: noise bank not found; build it with `edge-askd data noise --out {p}`")
    wanted = CATEGORIES if categories is None else tuple(categories)
    unknown = sorted(set(wanted) - set(CATEGORIES))
    if unknown:
        raise EdgeAskdError(f"noise categories {', '.join(unknown)} unknown; pick from {', '.join(CATEGORIES)}")
    entries = [e for e in read_manifest(manifest) if e.extra.get("category") in wanted]
    if not entries:
        raise EdgeAskdError(f"{manifest}: no pieces in {', '.join(wanted)}; rebuild it with `edge-askd data noise`")
    return [load_audio(e.audio_path(manifest)) for e in entries]


@dataclass(frozen=True)
class AugmentConfig:
    p_noise: float = 0.5
    p_real_noise: float = 0.5  # given real recordings: share of noise draws that use one rather than coloured noise
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_reverb: float = 0.3
    p_speed: float = 0.3
    speeds: tuple[float, ...] = (0.9, 1.1)
    p_telephone: float = 0.1
    gain_db: tuple[float, float] = (-10.0, 6.0)


def augment(
    audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None, noises: list[np.ndarray] = ()
) -> np.ndarray:
    """A random chain (speed, reverb, noise, telephone, gain); real noise recordings when given, else coloured."""
    cfg = config or AugmentConfig()
    out = audio
    if rng.random() < cfg.p_speed:
        out = speed(out, float(rng.choice(cfg.speeds)))
    if rng.random() < cfg.p_reverb:
        out, _ = reverb(out, rng)
    if rng.random() < cfg.p_noise:
        if len(noises) and rng.random() < cfg.p_real_noise:
            noise = noises[int(rng.integers(0, len(noises)))]
        else:
            noise = coloured_noise(len(out), rng, float(rng.choice([0.0, 1.0, 2.0])))
        out = add_noise(out, noise, float(rng.uniform(*cfg.snr_db)), rng)
    if rng.random() < cfg.p_telephone:
        out = telephone(out)
    return gain(out, float(rng.uniform(*cfg.gain_db)))
