"""Hallucination probes (`edge-askd data probes`): audio where the right transcript is empty, or only the speech.

Whisper-family models are known to invent text on silence, noise and long trailing pauses; this set measures
how often a student does. Each probe's reference is what a perfect model would output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_askd_runtime.atomic import atomic_path
from edge_askd_runtime.audio import SAMPLE_RATE, load_audio
from edge_askd_runtime.paths import cache_root

from .augment import coloured_noise
from .manifest import ManifestEntry, write_manifest


def _dbfs(x: np.ndarray, db: float) -> np.ndarray:
    """Scale unit-power noise to an RMS of `db` dB relative to full scale."""
    return (x * 10 ** (db / 20)).astype(np.float32)


def _tone(freqs: tuple[float, ...], seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (level / len(freqs) * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def _dtmf(digits: str) -> np.ndarray:
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477)
    keys = "123456789*0#"
    parts = []
    for d in digits:
        i = keys.index(d)
        parts += [_tone((rows[i // 3], cols[i % 3]), 0.15), np.zeros(int(0.1 * SAMPLE_RATE), np.float32)]
    return np.concatenate(parts)


def probe_signals(seed: int = 0, speech: tuple[np.ndarray, str] | None = None) -> dict[str, tuple[np.ndarray, str]]:
    """{name: (16 kHz audio, expected transcript)}, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n10 = 10 * SAMPLE_RATE
    probes = {
        "silence_10s": (np.zeros(n10, np.float32), ""),
        "silence_30s": (np.zeros(3 * n10, np.float32), ""),
        "white_noise_low": (_dbfs(coloured_noise(n10, rng, 0.0), -60), ""),
        "pink_noise_mid": (_dbfs(coloured_noise(n10, rng, 1.0), -35), ""),
        "white_noise_loud": (np.clip(_dbfs(coloured_noise(n10, rng, 0.0), -10), -1, 1), ""),
        "brown_noise_loud": (np.clip(_dbfs(coloured_noise(n10, rng, 2.0), -12), -1, 1), ""),
        "tone_440hz": (_tone((440.0,), 5.0), ""),
        "tone_1khz_beeps": (np.tile(np.concatenate([_tone((1000.0,), 0.3), np.zeros(4800, np.float32)]), 10), ""),
        "dtmf_digits": (_dtmf("5551234#"), ""),
        "hum_50hz": (_tone((50.0, 100.0, 150.0), 8.0, 0.2), ""),
    }
    if speech is not None:
        audio, text = speech
        probes["speech_then_20s_silence"] = (np.concatenate([audio, np.zeros(20 * SAMPLE_RATE, np.float32)]), text)
        probes["speech_then_20s_low_noise"] = (
            np.concatenate([audio, _dbfs(coloured_noise(20 * SAMPLE_RATE, rng, 1.0), -55)]),
            text,
        )
        probes["silence_5s_then_speech"] = (np.concatenate([np.zeros(5 * SAMPLE_RATE, np.float32), audio]), text)
    return probes


def build_probes(out_dir: Path | None = None, seed: int = 0, speech_clip: str = "arctic_a0009") -> Path:
    """Write the probes as 16 kHz wavs with a manifest (split "probe"); returns the manifest path."""
    import soundfile as sf

    from ..real_clips import REAL_CLIPS, fetch_clip

    out_dir = out_dir or cache_root() / "sets" / "probes"
    # A real recording that is not JFK (almost surely in Whisper's training data), so a tail hallucination
    # cannot be a memorised continuation.
    speech = (load_audio(fetch_clip(speech_clip)), REAL_CLIPS[speech_clip].text)
    entries = []
    for name, (audio, text) in probe_signals(seed, speech).items():
        wav = out_dir / "audio" / f"{name}.wav"
        with atomic_path(wav) as tmp:
            sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16")
        entries.append(
            ManifestEntry(f"audio/{wav.name}", text, round(len(audio) / SAMPLE_RATE, 3), "en", "probe", "probe")
        )
    return write_manifest(out_dir / "probe.jsonl", entries)
