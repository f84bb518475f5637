"""A run's logs: train_log.csv (one row per logged step) and eval_log.csv (one row per evaluation), written by
rank 0 only, and cut back to the checkpoint's step on a resume so the resumed run writes the rows again."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_text

LOG_FIELDS = [
    "step", "epoch", "loss", "ce", "kd", "hidden", "self_kd", "lambda", "beta", "lr", "grad_norm", "kd_kept",
    "audio_seconds", "sec_per_step", "sec_per_audio_second",
]  # fmt: skip
EVAL_FIELDS = [
    "step", "lambda", "dev_wer", "dev_ce", "dev_repeat_rate", "probe_hallucination_rate", "probe_clips", "dev_clips",
    "ema_dev_wer", "kept",
]  # fmt: skip
_COUNT_FIELDS = ("step", "probe_clips", "dev_clips")


def parse_cell(key: str, value: str) -> object:
    """A CSV cell back as the int/float it was logged as (a resumed, finished run reports numbers, not text).
    By column, not by look: a WER of exactly 1 is logged as "1" and is still a float."""
    for kind in (int, float) if key in _COUNT_FIELDS else (float,):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def format_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if not math.isnan(v) else "nan"
    return str(v)


def append_row(path: Path, fields: list[str], row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: format_cell(row[k]) if k in row else "" for k in fields})
        f.flush()


def truncate_rows(path: Path, fields: list[str], step: int) -> list[dict]:
    """Keep the rows up to `step` (the checkpoint a run resumes from) and return them, parsed."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["step"]) <= step]
    lines = [",".join(fields)] + [",".join(r[k] for k in fields) for r in keep]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return [{k: parse_cell(k, v) for k, v in r.items() if v != ""} for r in keep]
