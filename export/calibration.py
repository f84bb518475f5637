"""Calibration audio for the int8 encoder's SmoothQuant (`export/smoothquant.py`).

Real recordings from the training split of the telephone set (`edge-askd data real`, built from its pinned
package archive on first use), never the clips the parity gate, the evaluation sets or the benchmarks score on:
a calibrated export must not have seen its test speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_SET = ("telephone-en", "train.jsonl")  # (built set, manifest): 431 recordings, none in a WER set
CALIBRATION_CLIPS = 48  # evenly spaced through the manifest; ~10 s of PyTorch encoder passes for base
MAX_SECONDS = 28.0  # one encoder window (the runtime chunks longer audio; calibration takes whole clips)


def calibration_manifest(root: Path | None = None) -> Path:
    from edge_askd.data.real_sets import build_real_sets
    from edge_askd_runtime.paths import cache_root

    built, file = CALIBRATION_SET
    root = root or cache_root() / "sets"
    path = root / built / file
    if not path.is_file():
        build_real_sets(root, (built,))
    return path


def calibration_audio(count: int = CALIBRATION_CLIPS, manifest: Path | None = None) -> list[np.ndarray]:
    """`count` clips (16 kHz mono float32) spread evenly over the calibration manifest, each within one window."""
    from edge_askd.data.manifest import read_manifest
    from edge_askd_runtime.audio import load_audio

    from .parity import spaced

    manifest = manifest or calibration_manifest()
    paths = [entry.audio_path(manifest) for entry in read_manifest(manifest)]
    audio = [a for a in (load_audio(p) for p in spaced(paths, 2 * count)) if len(a) <= MAX_SECONDS * 16000]
    return spaced(audio, count)
