"""One manifest format for training, evaluation, pseudo-labelling and benchmarks: JSON Lines, one clip a line.

    {"audio": "audio/jfk.wav", "text": "...", "duration": 11.0, "language": "en", "source": "pywhispercpp==1.5.1",
     "split": "test", "speaker": "jfk"}

Relative audio paths are relative to the manifest's folder, so a set can be moved or copied as one folder.
Extra keys (e.g. a teacher's transcript) are kept in `extra` and written back unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_text
from edge_askd_runtime.errors import EdgeAskdError

REQUIRED = ("audio", "text", "duration", "language", "source", "split")
SPLITS = ("train", "dev", "test", "probe")


class ManifestError(EdgeAskdError):
    """A manifest line is malformed or points at audio that does not match it."""


@dataclass
class ManifestEntry:
    audio: str
    text: str
    duration: float
    language: str
    source: str
    split: str
    speaker: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        row = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        row.update(self.extra)
        return json.dumps(row, ensure_ascii=False)

    def audio_path(self, manifest: str | os.PathLike[str]) -> Path:
        p = Path(self.audio)
        return p if p.is_absolute() else Path(manifest).resolve().parent / p


def _entry_from_row(row: dict, where: str) -> ManifestEntry:
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}; every line needs {', '.join(REQUIRED)}")
    known = {*REQUIRED, "speaker"}
    try:
        duration = float(row["duration"])
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: duration {row['duration']!r} is not a number of seconds") from None
    if not isinstance(row["text"], str):
        raise ManifestError(f"{where}: text must be a string")
    if row["split"] not in SPLITS:
        raise ManifestError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
    return ManifestEntry(
        audio=str(row["audio"]),
        text=row["text"],
        duration=duration,
        language=str(row["language"]),
        source=str(row["source"]),
        split=row["split"],
        speaker=row.get("speaker"),
        extra={k: v for k, v in row.items() if k not in known},
    )


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[tuple[int, ManifestEntry]]:
    """(line number, entry) for each non-blank line; malformed lines raise ManifestError naming the line."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: manifest not found; build it with `edge-askd data real` or `edge-askd data synth`")
    with p.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            yield number, _entry_from_row(row, where)


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    return [entry for _, entry in iter_manifest(path)]


def write_manifest(path: str | os.PathLike[str], entries: Iterable[ManifestEntry]) -> Path:
    """Write atomically: a crash leaves either the old manifest or the complete new one, never half of one."""
    return atomic_write_text(path, "".join(entry.to_json() + "\n" for entry in entries))


@dataclass(frozen=True)
class ValidationConfig:
    check_audio: bool = True
    language: str | None = None  # every entry must have this language when set
    duration_tolerance: float = 0.1  # seconds between the stated duration and the decoded audio
    allow_empty_text: bool = False  # probes legitimately have an empty reference


def validate_manifest(path: str | os.PathLike[str], config: ValidationConfig | None = None) -> list[ManifestEntry]:
    """Read and check every line; the first problem raises ManifestError naming the file, line and fix."""
    import soundfile as sf

    cfg = config or ValidationConfig()
    entries = []
    for number, entry in iter_manifest(path):
        where = f"{path}:{number}"
        if not entry.text.strip() and not (cfg.allow_empty_text or entry.split == "probe"):
            raise ManifestError(f"{where}: empty text; give a reference transcript or drop the line")
        if cfg.language and entry.language != cfg.language:
            raise ManifestError(f"{where}: language {entry.language!r}, expected {cfg.language!r}")
        if entry.duration <= 0:
            raise ManifestError(f"{where}: duration {entry.duration} s must be positive")
        if cfg.check_audio:
            audio = entry.audio_path(path)
            if not audio.is_file():
                raise ManifestError(f"{where}: audio {audio} not found; rebuild the set or fix the path")
            try:
                info = sf.info(str(audio))
            except (sf.LibsndfileError, RuntimeError) as exc:
                detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
                raise ManifestError(f"{where}: audio {audio} cannot be read ({detail}); re-create the file") from None
            if abs(info.duration - entry.duration) > cfg.duration_tolerance:
                raise ManifestError(
                    f"{where}: duration {entry.duration:.2f} s but {audio.name} lasts {info.duration:.2f} s; "
                    "fix the duration field or the audio"
                )
        entries.append(entry)
    return entries


def manifest_hours(entries: Iterable[ManifestEntry]) -> float:
    return sum(e.duration for e in entries) / 3600.0
