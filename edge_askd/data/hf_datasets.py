"""Hugging Face `datasets` audio corpora from local disk (an audiofolder or a `save_to_disk` Arrow dataset), so a
user with LibriSpeech or Common Voice already downloaded can turn it into a manifest. Nothing is fetched.

Audio is decoded with soundfile here, not by the dataset's Audio feature: since `datasets` 4 that feature
encodes and decodes through torchcodec, which needs FFmpeg's shared libraries; a saved Arrow dataset's audio
column is read with decode=False (the stored bytes or path). For the same reason the audiofolder layout
(`metadata.csv` / `metadata.jsonl` with a `file_name` column, optionally in one folder per split) is read
directly rather than through `load_dataset("audiofolder")`; it is streamed row by row either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_askd_runtime.audio import SAMPLE_RATE
from edge_askd_runtime.errors import EdgeAskdError

from .manifest import ManifestEntry, write_manifest

TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text")


@dataclass(frozen=True)
class HFSource:
    path: Path  # an audiofolder (audio files + metadata.csv/jsonl) or a save_to_disk folder
    split: str = "train"
    audio_column: str = "audio"
    text_column: str | None = None  # default: the first of TEXT_COLUMNS present
    language: str = "en"
    streaming: bool = False  # Arrow: iterate as an IterableDataset (audiofolders are always read row by row)


def _audiofolder_rows(src: HFSource) -> tuple[list[str], Iterator[dict]]:
    import csv
    import json

    folder = src.path / src.split if (src.path / src.split).is_dir() else src.path
    csv_meta, jsonl_meta = folder / "metadata.csv", folder / "metadata.jsonl"
    if not csv_meta.is_file() and not jsonl_meta.is_file():
        raise EdgeAskdError(f"{folder}: no metadata.csv or metadata.jsonl; an audiofolder needs one (file_name, text)")

    def rows() -> Iterator[dict]:
        if csv_meta.is_file():
            with csv_meta.open(newline="", encoding="utf-8") as f:
                yield from csv.DictReader(f)
        else:
            with jsonl_meta.open(encoding="utf-8") as f:
                yield from (json.loads(line) for line in f if line.strip())

    first = next(rows(), None)
    if first is None or "file_name" not in first:
        raise EdgeAskdError(f"{folder}: metadata has no file_name column")
    columns = [src.audio_column if c == "file_name" else c for c in first]
    return columns, (
        {**{k: v for k, v in r.items() if k != "file_name"}, src.audio_column: {"path": str(folder / r["file_name"])}}
        for r in rows()
    )


def _open(src: HFSource) -> tuple[list[str], Iterator[dict]]:
    """(column names, rows) with the audio column as {"bytes": ..., "path": ...}, decoding nothing."""
    if not src.path.exists():
        raise EdgeAskdError(f"{src.path}: dataset folder not found")
    if not ((src.path / "dataset_info.json").is_file() or (src.path / "dataset_dict.json").is_file()):
        return _audiofolder_rows(src)
    try:
        import datasets
    except ImportError:
        raise EdgeAskdError("reading saved Arrow datasets needs `pip install edge-askd[data]` (datasets)") from None
    ds = datasets.load_from_disk(str(src.path))
    if isinstance(ds, datasets.DatasetDict):
        if src.split not in ds:
            raise EdgeAskdError(f"{src.path}: no split {src.split!r}; it has {', '.join(ds)}")
        ds = ds[src.split]
    if src.audio_column not in ds.column_names:
        raise EdgeAskdError(f"{src.path}: no audio column {src.audio_column!r}; columns: {', '.join(ds.column_names)}")
    ds = ds.cast_column(src.audio_column, datasets.Audio(decode=False))
    # Memory-mapped either way; the iterable form never materialises an index, for very large corpora.
    return list(ds.column_names), iter(ds.to_iterable_dataset() if src.streaming else ds)


def iter_examples(src: HFSource) -> Iterator[tuple[np.ndarray, str, dict]]:
    """(16 kHz mono float32 audio, text, the other columns) per example."""
    import io

    import soundfile as sf

    from edge_askd_runtime.audio import resample, to_mono

    columns, rows = _open(src)
    text_col = src.text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_col not in columns:
        looked = text_col or ", ".join(TEXT_COLUMNS)
        raise EdgeAskdError(f"{src.path}: no transcript column ({looked}); columns: {', '.join(columns)}")
    for row in rows:
        audio = row[src.audio_column]
        where = audio.get("path") or "?"
        try:
            data, rate = sf.read(io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio["path"], dtype="float32")
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise EdgeAskdError(f"{src.path}: example {where} cannot be decoded ({exc}); re-export it") from None
        extra = {k: v for k, v in row.items() if k not in (src.audio_column, text_col)}
        yield resample(to_mono(data), int(rate), SAMPLE_RATE), row[text_col], extra


def to_manifest(src: HFSource, out_dir: Path, limit: int | None = None) -> Path:
    """Write the examples as 16 kHz wavs + a manifest in out_dir (a uniform input for every other command)."""
    import soundfile as sf

    entries = []
    for i, (audio, text, extra) in enumerate(iter_examples(src)):
        if limit is not None and i >= limit:
            break
        wav = out_dir / "audio" / f"{i:07d}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
        speaker = extra.get("speaker_id", extra.get("client_id"))
        entries.append(
            ManifestEntry(
                f"audio/{wav.name}",
                text,
                round(len(audio) / SAMPLE_RATE, 3),
                src.language,
                f"hf:{src.path.name}",
                src.split if src.split in ("train", "dev", "test") else "train",
                None if speaker is None else str(speaker),
            )
        )
    return write_manifest(out_dir / f"{src.split}.jsonl", entries)
