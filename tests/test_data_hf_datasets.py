"""Local Hugging Face datasets (audiofolder and save_to_disk Arrow) -> manifest, on a small dataset made here
from real clips."""

import csv

import numpy as np
import pytest

from edge_askd.data.hf_datasets import HFSource, iter_examples, to_manifest
from edge_askd.data.manifest import validate_manifest
from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.errors import EdgeAskdError

NAMES = ["arctic_a0007", "arctic_a0009", "librivox_0880"]


@pytest.fixture
def audiofolder(real_clip, tmp_path):
    root = tmp_path / "af"
    (root / "train").mkdir(parents=True)
    with (root / "train" / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "sentence", "speaker_id"])
        for n in NAMES:
            (root / "train" / f"{n}.wav").write_bytes(real_clip(n).read_bytes())
            w.writerow([f"{n}.wav", REAL_CLIPS[n].text, REAL_CLIPS[n].speaker])
    return root


@pytest.mark.parametrize("streaming", [False, True])
def test_audiofolder_to_manifest(audiofolder, real_clip, tmp_path, streaming):
    manifest = to_manifest(HFSource(audiofolder, streaming=streaming), tmp_path / f"out{streaming}")
    entries = validate_manifest(manifest)
    assert sorted(e.text for e in entries) == sorted(REAL_CLIPS[n].text for n in NAMES)
    assert {e.speaker for e in entries} == {REAL_CLIPS[n].speaker for n in NAMES}
    by_text = {e.text: e for e in entries}
    for n in NAMES:
        ref = load_audio(real_clip(n))
        got = load_audio(by_text[REAL_CLIPS[n].text].audio_path(manifest))
        assert len(got) == len(ref) and np.max(np.abs(got - ref)) < 1e-3


@pytest.mark.parametrize("streaming", [False, True])
def test_saved_arrow_dataset_with_audio_feature(real_clip, tmp_path, streaming):
    import datasets

    rows = {"audio": [{"bytes": real_clip(n).read_bytes(), "path": f"{n}.wav"} for n in NAMES]}
    rows["text"] = [REAL_CLIPS[n].text for n in NAMES]
    # Stored as the Audio feature, as `save_to_disk` of LibriSpeech / Common Voice leaves it.
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(sampling_rate=16000))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "arrow"))
    manifest = to_manifest(HFSource(tmp_path / "arrow", split="test", streaming=streaming), tmp_path / "m")
    entries = validate_manifest(manifest)
    assert [e.text for e in entries] == rows["text"] and all(e.split == "test" for e in entries)
    assert entries[1].duration == pytest.approx(3.1, abs=0.05)
    with pytest.raises(EdgeAskdError, match=r"no transcript column \(missing\)"):
        list(iter_examples(HFSource(tmp_path / "arrow", split="test", text_column="missing")))
    with pytest.raises(EdgeAskdError, match="no split 'train'; it has test"):
        list(iter_examples(HFSource(tmp_path / "arrow")))


def test_cli_from_hf(audiofolder, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edge_askd.cli", "data", "from-hf", str(audiofolder), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "3 clips" in proc.stdout and len(validate_manifest(tmp_path / "o" / "train.jsonl")) == 3


def test_missing_folder_and_metadata_are_one_line_errors(tmp_path):
    with pytest.raises(EdgeAskdError, match="dataset folder not found"):
        list(iter_examples(HFSource(tmp_path / "nope")))
    with pytest.raises(EdgeAskdError, match="no metadata.csv or metadata.jsonl"):
        list(iter_examples(HFSource(tmp_path)))
