"""Manifest format: round trip, validation errors that name the line, atomic writes, the `data validate` CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edge_askd.data.manifest import (
    ManifestEntry,
    ManifestError,
    ValidationConfig,
    read_manifest,
    validate_manifest,
    write_manifest,
)


@pytest.fixture
def clip_dir(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros(16000, np.float32), 16000)  # 1.0 s
    sf.write(tmp_path / "audio" / "b.wav", np.zeros(8000, np.float32), 8000)  # 1.0 s at 8 kHz
    return tmp_path


def entry(audio="audio/a.wav", text="hello there", duration=1.0, language="en", **kw):
    return ManifestEntry(audio, text, duration, language, "test", "test", **kw)


def test_round_trip_keeps_extra_fields_and_relative_paths(clip_dir):
    m = write_manifest(clip_dir / "m.jsonl", [entry(speaker="s1", extra={"teacher_wer": 0.1}), entry("audio/b.wav")])
    got = read_manifest(m)
    assert got[0].speaker == "s1" and got[0].extra == {"teacher_wer": 0.1} and got[1].speaker is None
    assert got[1].audio_path(m) == clip_dir / "audio" / "b.wav"
    assert len(validate_manifest(m, ValidationConfig(language="en"))) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"audio": "audio/missing.wav"}, ":2: audio "),
        ({"text": "  "}, ":2: empty text"),
        ({"duration": 3.0}, ":2: duration 3.00 s but a.wav lasts 1.00 s"),
        ({"language": "fr"}, ":2: language 'fr', expected 'en'"),
    ],
)
def test_validation_names_the_line(clip_dir, bad, message):
    rows = [entry(), entry(**bad)]
    m = write_manifest(clip_dir / "m.jsonl", rows)
    with pytest.raises(ManifestError) as err:
        validate_manifest(m, ValidationConfig(language="en"))
    assert message in str(err.value) and str(m) in str(err.value) and "\n" not in str(err.value)


def test_unreadable_audio_and_malformed_lines(clip_dir):
    (clip_dir / "audio" / "bad.wav").write_bytes(b"RIFF not really a wav")
    m = write_manifest(clip_dir / "m.jsonl", [entry("audio/bad.wav")])
    with pytest.raises(ManifestError, match=r":1: audio .*bad.wav cannot be read"):
        validate_manifest(m)
    m.write_text(json.dumps({"audio": "x.wav", "text": "t"}) + "\n")
    with pytest.raises(ManifestError, match=r":1: missing field\(s\) duration, language, source, split"):
        read_manifest(m)
    m.write_text(entry().to_json() + "\n\n{not json\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:3: not valid JSON"):
        read_manifest(m)


def test_write_is_atomic_on_crash(clip_dir):
    m = write_manifest(clip_dir / "m.jsonl", [entry()])
    before = m.read_bytes()

    def crashing():
        yield entry("audio/b.wav")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_manifest(m, crashing())
    assert m.read_bytes() == before
    assert sorted(p.name for p in clip_dir.iterdir()) == ["audio", "m.jsonl"]  # no temp file left behind


def test_cli_validate_reports_one_line(clip_dir):
    m = write_manifest(clip_dir / "m.jsonl", [entry(), entry(duration=9.0)])
    cmd = [sys.executable, "-m", "edge_askd.cli", "data", "validate", str(m)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("edge-askd: error:") and "m.jsonl:2: duration" in proc.stderr
    write_manifest(m, [entry(), entry("audio/b.wav")])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)["clips"] == 2
