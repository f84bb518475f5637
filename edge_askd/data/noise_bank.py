"""A bank of real noise recordings for additive-noise augmentation (`edge-askd data noise`), built offline.

Categories and where they come from (every archive pinned by version and full sha256):

* music: asterisk-moh-opsound-wav, five recorded music-on-hold tracks (8 kHz, so nothing above 4 kHz).
* effects: sound-theme-freedesktop, recorded desktop sound effects (.oga). Its `audio-channel-*` files are a
  voice saying the channel name, so they are babble here, and `audio-test-signal.oga` is the same test noise as
  alsa-utils' `Noise.wav` (correlation 0.99), so it is left out.
* noise: alsa-utils' `Noise.wav`, the speaker-test noise signal (1.4 s).
* babble: untranscribed real speech from the silero-vad sdist (a lecture, a VoxConverse excerpt) and the
  freedesktop channel-name voice.

Each file is decoded, downmixed, resampled to 16 kHz and cut into equal pieces of at most `piece_seconds`;
pieces quieter than `silence_dbfs` are dropped (a silent piece cannot be scaled to an SNR). The manifest is the
project's format with text "" and a `category` field; rebuilding gives byte-identical wavs and manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_askd_runtime.audio import SAMPLE_RATE
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.paths import cache_root

from ..real_clips import SdistArchive
from .fetch import DebPackage
from .manifest import ManifestEntry, read_manifest, write_manifest
from .real_sets import ALSA_UTILS, _ArchiveReader, _decode, _write_wav16

CATEGORIES = ("music", "effects", "noise", "babble")
MANIFEST = "noise.jsonl"

ASTERISK_MOH = DebPackage(
    "asterisk-moh-opsound-wav", "2.03-1.1", "8f9d808a729d305c2d3343993f21ca5e6829e411682618dc8ea7aa8bc24a566c"
)
FREEDESKTOP_SOUNDS = DebPackage(
    "sound-theme-freedesktop", "0.8-2", "135cc4893ba590d428577bc3bf42df756a165c05a2a43f84311ad7db779a70ea"
)
SILERO_VAD = SdistArchive("silero-vad", "6.2.3", "d7a23b09202be4953915cb9173089bb307eed0418a9bd4794d9ec5af07fa1996")


@dataclass(frozen=True)
class NoiseSource:
    name: str  # stem of the output pieces
    archive: SdistArchive | DebPackage
    member: str  # path inside the archive (below an sdist's top folder)
    category: str


_MOH = "usr/share/asterisk/moh/{}.wav"
_FREEDESKTOP = "usr/share/sounds/freedesktop/stereo/{}.oga"
_EFFECTS = [
    "alarm-clock-elapsed",
    "audio-volume-change",
    "bell",
    "camera-shutter",
    "complete",
    "device-added",
    "device-removed",
    "dialog-information",
    "dialog-warning",
    "message",
    "message-new-instant",
    "phone-incoming-call",
    "phone-outgoing-busy",
    "phone-outgoing-calling",
    "service-login",
    "service-logout",
    "suspend-error",
    "trash-empty",
]
_CHANNELS = [f"{a}-{b}" for a in ("front", "rear") for b in ("left", "center", "right")] + ["side-left", "side-right"]

NOISE_SOURCES: list[NoiseSource] = [
    *[
        NoiseSource(f"moh_{n.replace('-', '_')}", ASTERISK_MOH, _MOH.format(n), "music")
        for n in (
            "macroform-cold_day",
            "macroform-robot_dity",
            "macroform-the_simplicity",
            "manolo_camp-morning_coffee",
            "reno_project-system",
        )
    ],
    *[
        NoiseSource(f"fd_{n.replace('-', '_')}", FREEDESKTOP_SOUNDS, _FREEDESKTOP.format(n), "effects")
        for n in _EFFECTS
    ],
    NoiseSource("alsa_noise", ALSA_UTILS, "usr/share/sounds/alsa/Noise.wav", "noise"),
    NoiseSource("silero_test", SILERO_VAD, "tests/data/test.wav", "babble"),
    NoiseSource("silero_aepyx", SILERO_VAD, "examples/c++/aepyx.wav", "babble"),
    *[
        NoiseSource(
            f"fd_channel_{n.replace('-', '_')}", FREEDESKTOP_SOUNDS, _FREEDESKTOP.format(f"audio-channel-{n}"), "babble"
        )
        for n in _CHANNELS
    ],
]


@dataclass(frozen=True)
class NoiseBankConfig:
    piece_seconds: float = 10.0  # longest piece: long enough to loop rarely, short enough to load cheaply
    silence_dbfs: float = -50.0  # pieces with a lower RMS are dropped (track lead-ins, fade-outs)


def _dbfs(audio: np.ndarray) -> float:
    return 10 * math.log10(max(float(np.mean(np.square(audio, dtype=np.float64))), 1e-20))


def cut_pieces(audio: np.ndarray, piece_seconds: float) -> list[tuple[int, np.ndarray]]:
    """(start sample, piece): equal pieces of at most `piece_seconds`, so none is a sliver at the end."""
    longest = int(piece_seconds * SAMPLE_RATE)
    count = max(math.ceil(len(audio) / longest), 1)
    bounds = [round(i * len(audio) / count) for i in range(count + 1)]
    return [(a, audio[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def build_noise_bank(
    out_dir: Path | None = None, config: NoiseBankConfig | None = None, cache: Path | None = None
) -> Path:
    """Build (or rebuild, byte-identically) the bank under `out_dir` (default <cache>/sets/noise); its manifest."""
    cfg = config or NoiseBankConfig()
    root = cache or cache_root()
    out_dir = out_dir or root / "sets" / "noise"
    reader = _ArchiveReader(root)
    entries: list[ManifestEntry] = []
    try:
        for src in NOISE_SOURCES:
            audio = _decode(reader.reader(src.archive)(src.member), src.name, raw=False)
            if isinstance(src.archive, SdistArchive):
                source = f"{src.archive.distribution}=={src.archive.version}"
            else:
                source = f"deb:{src.archive.spec}"
            for number, (start, piece) in enumerate(cut_pieces(audio, cfg.piece_seconds)):
                if _dbfs(piece) < cfg.silence_dbfs:
                    continue
                wav = out_dir / "audio" / f"{src.name}_{number:03d}.wav"
                duration = _write_wav16(wav, piece)
                offset = round(start / SAMPLE_RATE, 3)
                extra = {"category": src.category, "member": src.member, "offset": offset}
                row = ManifestEntry(f"audio/{wav.name}", "", round(duration, 3), "", source, "train", None, extra)
                entries.append(row)
    finally:
        reader.close()
    missing = set(CATEGORIES) - {e.extra["category"] for e in entries}
    if missing:
        raise EdgeAskdError(f"{out_dir}: no audible pieces for {', '.join(sorted(missing))}; check the pinned archives")
    return write_manifest(out_dir / MANIFEST, entries)


def noise_minutes(manifest: Path) -> dict[str, float]:
    """Minutes of audio per category."""
    minutes = dict.fromkeys(CATEGORIES, 0.0)
    for e in read_manifest(manifest):
        minutes[e.extra.get("category", "")] = minutes.get(e.extra.get("category", ""), 0.0) + e.duration / 60
    return minutes
