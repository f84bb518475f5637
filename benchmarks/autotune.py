"""Pick this device's default model: the fastest candidate within a WER budget of the most accurate one."""

from __future__ import annotations

import json
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_json
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.paths import cache_root

DEVICE_DEFAULT_FILE = "device.json"


def choose(result: dict, wer_budget: float = 0.01, length_s: float = 5.0, kinds=("runtime",)) -> dict:
    """Fastest row (median end-to-end at the clip length closest to `length_s`) among `kinds` whose WER is
    within `wer_budget` (absolute, 0.01 = 1 point) of the best WER measured in the run."""
    rows = result["rows"]
    if not rows:
        raise EdgeAskdError("the benchmark measured nothing; nothing to choose from")
    best_wer = min(r["wer"] for r in rows)
    length = min({r["audio_s"] for r in rows}, key=lambda s: abs(s - length_s))
    eligible = [r for r in rows if r["audio_s"] == length and r["kind"] in kinds and r["wer"] <= best_wer + wer_budget]
    if not eligible:
        raise EdgeAskdError(
            f"no {'/'.join(kinds)} candidate is within {wer_budget * 100:.1f} WER points of the best "
            f"({best_wer * 100:.2f}%); export a better student or raise --wer-budget"
        )
    return min(eligible, key=lambda r: r["e2e_ms"]["median"])


def write_device_default(row: dict, path: Path | None = None) -> Path:
    """The chosen row as this device's default: for an export, its absolute path (so it works from any directory)
    with the backend, precision and threads it was measured with, which `transcribe` and `listen` then use."""
    path = path or cache_root() / DEVICE_DEFAULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    default = {
        "candidate": row["candidate"],
        "model": row["model"],
        "threads": row.get("threads"),
        "wer": row["wer"],
        "e2e_ms": row["e2e_ms"]["median"],
        "audio_s": row["audio_s"],
    }
    if row.get("kind") == "runtime":  # candidate "runtime:DIR:BACKEND:PRECISION" (candidates.parse_candidate)
        from .candidates import parse_runtime_candidate

        export_dir, backend, precision, device = parse_runtime_candidate(row["candidate"])
        default |= {
            "model": str(Path(export_dir).resolve()),
            "backend": backend,
            "precision": precision,
            "device": device or row.get("device"),
        }
    atomic_write_json(path, default)
    return path


def read_device_default(path: Path | None = None) -> dict | None:
    path = path or cache_root() / DEVICE_DEFAULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
