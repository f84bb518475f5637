"""Result types shared by every transcriber (PyTorch teacher/student and the device runtime)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Segment:
    """One decoded stretch of speech; times are seconds in the original audio, trimmed to where speech was heard."""

    start: float
    end: float
    text: str
    tokens: list[int]


@dataclass
class Transcription:
    text: str
    tokens: list[int]
    audio_seconds: float
    language: str | None = None
    language_probability: float | None = None  # set when the language was detected (language="auto")
    # Wall-clock seconds per stage: "load_audio", "features", "encode", "decode", "total".
    timings: dict[str, float] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
