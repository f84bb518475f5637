"""Hallucination probes: the audio is what its name says and the expected transcript is empty or the speech."""

import numpy as np
import pytest

from edge_askd.data.manifest import ValidationConfig, validate_manifest
from edge_askd.data.probes import build_probes
from edge_askd_runtime.audio import load_audio


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    manifest = build_probes(tmp_path_factory.mktemp("probes"))
    entries = validate_manifest(manifest, ValidationConfig(language="en", duration_tolerance=0.002))
    return manifest, {e.audio.split("/")[-1].removesuffix(".wav"): e for e in entries}


def _dbfs(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def test_probe_audio_matches_its_name(probes):
    manifest, by = probes
    audio = {name: load_audio(e.audio_path(manifest)) for name, e in by.items()}
    assert not np.any(audio["silence_10s"]) and len(audio["silence_30s"]) == 30 * 16000
    assert -62 < _dbfs(audio["white_noise_low"]) < -58 and -12 < _dbfs(audio["white_noise_loud"]) < -8
    spec = np.abs(np.fft.rfft(audio["tone_440hz"]))
    assert np.fft.rfftfreq(len(audio["tone_440hz"]), 1 / 16000)[spec.argmax()] == pytest.approx(440, abs=1)
    speech, tail = audio["speech_then_20s_silence"][: -20 * 16000], audio["speech_then_20s_silence"][-20 * 16000 :]
    assert _dbfs(speech) > -40 and not np.any(tail)


def test_expected_transcripts(probes):
    _, by = probes
    speech = {n for n, e in by.items() if e.text}
    assert speech == {"speech_then_20s_silence", "speech_then_20s_low_noise", "silence_5s_then_speech"}
    assert by["speech_then_20s_silence"].text == "He turned sharply, and faced Gregson across the table."
    assert len(by) - len(speech) >= 9 and all(e.split == "probe" for e in by.values())


def test_probes_are_deterministic(probes, tmp_path):
    manifest, _ = probes
    again = build_probes(tmp_path)
    assert again.read_text() == manifest.read_text()
    assert (tmp_path / "audio" / "pink_noise_mid.wav").read_bytes() == (
        manifest.parent / "audio" / "pink_noise_mid.wav"
    ).read_bytes()


def test_cli_probes_and_real_clip(tmp_path):
    import subprocess
    import sys

    cli = [sys.executable, "-m", "edge_askd.cli", "data"]
    proc = subprocess.run([*cli, "probes", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(tmp_path / "probe.jsonl")) and "13 clips" in proc.stdout
    proc = subprocess.run([*cli, "clip", "jfk"], capture_output=True, text=True)  # the Makefile's demo uses it
    assert proc.returncode == 0 and proc.stdout.strip().endswith("jfk.wav")
