"""Teacher pseudo-labels on real speech: batched = one-by-one, WER stored, Distil-Whisper filter, resumable."""

import pytest

from edge_askd.data.manifest import ManifestEntry, read_manifest, write_manifest
from edge_askd.data.pseudo_label import PseudoLabelConfig, pseudo_label, transcribe_batch
from edge_askd.real_clips import REAL_CLIPS

CLIPS = ["arctic_a0007", "arctic_a0009", "librivox_0880"]


@pytest.fixture
def manifest(real_clip, tmp_path):
    entries = [
        ManifestEntry(str(real_clip(n)), REAL_CLIPS[n].text, 3.0, "en", "test", "test", REAL_CLIPS[n].speaker)
        for n in CLIPS
    ]
    # A deliberately wrong reference: its teacher WER must be high and the filter must drop it.
    entries.append(
        ManifestEntry(str(real_clip("arctic_a0009")), "completely unrelated words here", 3.1, "en", "t", "test")
    )
    return write_manifest(tmp_path / "in.jsonl", entries)


def test_pseudo_label_filter_and_resume(manifest, tmp_path, monkeypatch):
    out = tmp_path / "labelled.jsonl"
    report = pseudo_label(manifest, out, PseudoLabelConfig(model="teacher:tiny.en", batch_size=3), progress=False)
    rows = read_manifest(out)
    assert report.total == 4 and [r.extra["teacher"] for r in rows] == ["teacher:tiny.en"] * 4
    assert (
        all(r.extra["teacher_wer"] <= 0.1 for r in rows[:2])
        and rows[2].extra["teacher_wer"] <= 0.4
        and rows[3].extra["teacher_wer"] >= 0.8
    )
    kept = read_manifest(report.kept)
    assert report.kept_count == len(kept) and rows[3].text not in {k.text for k in kept} and len(kept) >= 2
    assert all(k.extra["teacher_wer"] <= 0.10 for k in kept)

    # Resuming a finished run must not load the teacher again.
    import edge_askd.hf_transcriber as hf

    monkeypatch.setattr(hf, "HFTranscriber", lambda *a, **k: pytest.fail("teacher loaded on resume"))
    again = pseudo_label(manifest, out, PseudoLabelConfig(model="teacher:tiny.en"), progress=False)
    assert again.kept_count == report.kept_count and read_manifest(out) == rows


def test_batched_equals_one_by_one(real_clip):
    from edge_askd.hf_transcriber import HFTranscriber

    teacher = HFTranscriber("teacher:tiny.en", threads=2)
    paths = [real_clip(n) for n in CLIPS]
    assert transcribe_batch(teacher, paths) == [teacher.transcribe(p).text for p in paths]
