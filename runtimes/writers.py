"""Transcript files: plain text, JSON, SubRip (.srt) and WebVTT (.vtt), each written atomically.

A reader (a subtitle player, a sync tool) never sees a half-written file: each file is written to a temporary
name in the same directory, fsynced, then renamed over the target (`atomic.atomic_write_text`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .atomic import atomic_write_text
from .errors import EdgeAskdError
from .results import Segment, Transcription

FORMATS = ("txt", "json", "srt", "vtt")


def parse_formats(spec: str) -> list[str]:
    """`"srt,vtt"` or `"all"` -> the formats in canonical order; EdgeAskdError names an unknown one."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    if "all" in names:
        return list(FORMATS)
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise EdgeAskdError(
            f"unknown output format {', '.join(unknown) or repr(spec)}; use {', '.join(FORMATS)}, "
            "a comma list of them, or all"
        )
    return [name for name in FORMATS if name in names]


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def srt_timestamp(seconds: float) -> str:
    return _timestamp(seconds, ",")


def vtt_timestamp(seconds: float) -> str:
    return _timestamp(seconds, ".")


def cues(result: Transcription) -> list[Segment]:
    """The segments to show as subtitles; one cue over the whole audio if text came without segments."""
    if result.segments:
        return [s for s in result.segments if s.text.strip()]
    if result.text.strip():
        return [Segment(0.0, result.audio_seconds, result.text, list(result.tokens))]
    return []


def _one_line(text: str) -> str:
    # A blank line ends a cue in both formats, so cue text must not contain one.
    return re.sub(r"\s+", " ", text).strip()


def to_srt(result: Transcription) -> str:
    blocks = [
        f"{i}\n{srt_timestamp(c.start)} --> {srt_timestamp(max(c.end, c.start))}\n{_one_line(c.text)}\n"
        for i, c in enumerate(cues(result), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: a bare "<" or "&" would start a tag or an entity.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(result: Transcription) -> str:
    blocks = [
        f"{vtt_timestamp(c.start)} --> {vtt_timestamp(max(c.end, c.start))}\n{_vtt_escape(_one_line(c.text))}\n"
        for c in cues(result)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(result: Transcription, audio_path: str | os.PathLike[str]) -> str:
    return json.dumps({"file": str(audio_path), **result.to_dict()}, ensure_ascii=False) + "\n"


def verbose_json(result: Transcription, task: str = "transcribe") -> dict:
    """OpenAI's `verbose_json` transcription body: task, language, duration, text and the segments (id, start,
    end, text, tokens; seek is always 0: no 30 s windows here). No log-probabilities or word times: the greedy
    runtime has none to report."""
    return {
        "task": task,
        "language": result.language or "",
        "duration": round(result.audio_seconds, 3),
        "text": result.text,
        "segments": [
            {"id": i, "seek": 0, "start": c.start, "end": max(c.end, c.start), "text": c.text, "tokens": list(c.tokens)}
            for i, c in enumerate(cues(result))
        ],
    }


def to_verbose_json(result: Transcription, task: str = "transcribe") -> str:
    return json.dumps(verbose_json(result, task), ensure_ascii=False) + "\n"


def to_txt(result: Transcription) -> str:
    return result.text.strip() + "\n" if result.text.strip() else ""


def render(result: Transcription, audio_path: str | os.PathLike[str], fmt: str) -> str:
    """The file content of `result` in one of FORMATS."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result, audio_path)
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    raise EdgeAskdError(f"unknown output format {fmt!r}; use {', '.join(FORMATS)}")


def write_outputs(
    result: Transcription,
    audio_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    formats: Iterable[str],
    stem: str | None = None,
) -> list[Path]:
    """Write `OUT_DIR/STEM.FORMAT` for each format (STEM: the audio file's name without its suffix); -> paths."""
    formats = list(formats)
    if unknown := [fmt for fmt in formats if fmt not in FORMATS]:
        raise EdgeAskdError(f"unknown output format {', '.join(unknown)}; use {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = stem or Path(audio_path).stem
    return [atomic_write_text(out / f"{name}.{fmt}", render(result, audio_path, fmt)) for fmt in formats]


__all__ = [
    "FORMATS",
    "atomic_write_text",
    "parse_formats",
    "render",
    "srt_timestamp",
    "to_srt",
    "to_verbose_json",
    "to_vtt",
    "verbose_json",
    "vtt_timestamp",
    "write_outputs",
]
