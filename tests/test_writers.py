"""Transcript files (txt, json, srt, vtt): standard timestamps, atomic writes, and the CLI writing them."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.results import Segment, Transcription
from edge_askd_runtime.scoring import wer
from edge_askd_runtime.writers import (
    atomic_write_text,
    parse_formats,
    srt_timestamp,
    vtt_timestamp,
    write_outputs,
)

SRT_CUE = re.compile(r"^(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)$")
VTT_CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(.+)$")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(content: str) -> list[tuple[float, float, str]]:
    cues = []
    for index, block in enumerate(content.strip().split("\n\n"), start=1):
        match = SRT_CUE.match(block)
        assert match, block
        assert int(match.group(1)) == index
        cues.append((_seconds(*match.group(2, 3, 4, 5)), _seconds(*match.group(6, 7, 8, 9)), match.group(10)))
    return cues


def parse_vtt(content: str) -> list[tuple[float, float, str]]:
    header, *blocks = content.strip().split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in blocks:
        match = VTT_CUE.match(block)
        assert match, block
        cues.append((_seconds(*match.group(1, 2, 3, 4)), _seconds(*match.group(5, 6, 7, 8)), match.group(9)))
    return cues


def _result() -> Transcription:
    segments = [
        Segment(0.25, 4.4401, "And so my fellow Americans,", [1, 2]),
        Segment(5.25, 3725.5, "ask not\n\nwhat <your> country & more", [3]),
    ]
    return Transcription(
        text=" ".join(s.text for s in segments), tokens=[1, 2, 3], audio_seconds=3726.0, segments=segments
    )


def test_timestamps_are_standard():
    assert srt_timestamp(0) == "00:00:00,000"
    assert srt_timestamp(3725.5) == "01:02:05,500"
    assert vtt_timestamp(4.4401) == "00:00:04.440"
    assert vtt_timestamp(59.9996) == "00:01:00.000"  # rounding carries into the minutes


def test_formats_parse_back(tmp_path):
    written = write_outputs(_result(), "talk.wav", tmp_path, parse_formats("all"))
    assert [p.name for p in written] == ["talk.txt", "talk.json", "talk.srt", "talk.vtt"]
    expected = [(0.25, 4.44, "And so my fellow Americans,"), (5.25, 3725.5, None)]
    srt = parse_srt((tmp_path / "talk.srt").read_text(encoding="utf-8"))
    vtt = parse_vtt((tmp_path / "talk.vtt").read_text(encoding="utf-8"))
    for cues in (srt, vtt):
        assert [(s, e) for s, e, _ in cues] == [(s, e) for s, e, _ in expected]
        assert cues[0][2] == expected[0][2]
    # A blank line would end the cue early; in WebVTT "<" and "&" are markup.
    assert srt[1][2] == "ask not what <your> country & more"
    assert vtt[1][2] == "ask not what &lt;your&gt; country &amp; more"
    row = json.loads((tmp_path / "talk.json").read_text(encoding="utf-8"))
    assert row["file"] == "talk.wav" and row["segments"][1]["start"] == 5.25 and row["tokens"] == [1, 2, 3]
    assert (tmp_path / "talk.txt").read_text(encoding="utf-8") == _result().text + "\n"


def test_empty_transcript_gives_empty_cue_lists(tmp_path):
    write_outputs(Transcription("", [], 2.0), "quiet.wav", tmp_path, ["srt", "vtt", "txt"])
    assert (tmp_path / "quiet.srt").read_text() == ""
    assert (tmp_path / "quiet.vtt").read_text() == "WEBVTT\n\n"
    assert (tmp_path / "quiet.txt").read_text() == ""


def test_parse_formats():
    assert parse_formats("vtt, srt") == ["srt", "vtt"]
    assert parse_formats("all") == ["txt", "json", "srt", "vtt"]
    with pytest.raises(EdgeAskdError, match="unknown output format sub"):
        parse_formats("srt,sub")


def test_atomic_write_leaves_no_temp_and_keeps_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.srt"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["a.srt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "half\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["a.srt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_writes_every_format_and_survives_a_bad_file(real_clip, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    clip = real_clip("jfk")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_askd.cli", "transcribe", str(bad), str(clip), "--model", "teacher:tiny.en"]
        + ["--threads", "2", "--output-dir", str(out), "--output-format", "all"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "broken.wav" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(out)) == ["jfk.json", "jfk.srt", "jfk.txt", "jfk.vtt"]
    text = (out / "jfk.txt").read_text().strip()
    assert proc.stdout.strip() == f"{clip}\t{text}"  # stdout as without --output-dir
    assert wer([REAL_CLIPS["jfk"].text], [text]) <= 0.05
    for cues in (parse_srt((out / "jfk.srt").read_text()), parse_vtt((out / "jfk.vtt").read_text())):
        assert len(cues) == 1
        start, end, cue_text = cues[0]
        assert 0.0 <= start < 0.5 and 10.0 <= end <= 11.0  # jfk: speech from the start to ~10.5 s of 11 s
        assert cue_text == text
    row = json.loads((out / "jfk.json").read_text())
    assert row["text"] == text and row["segments"][0]["tokens"] == row["tokens"]


def test_atomic_writes_use_unique_temporaries_and_keep_the_old_file_on_failure(tmp_path):
    """The one atomic-write helper: concurrent writers never share a temporary, the temporary keeps the target's
    suffix (soundfile picks the format from it), a failed write leaves the old content and no temporary."""
    import threading

    import soundfile as sf

    from edge_askd_runtime.atomic import atomic_path, atomic_write_json, atomic_write_text

    target = tmp_path / "out.json"
    atomic_write_json(target, {"old": True})
    seen: list[str] = []

    def write(i: int) -> None:
        with atomic_path(target) as tmp:
            seen.append(tmp.name)
            tmp.write_text(f'{{"writer": {i}}}\n')

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 8 and all(name.endswith(".tmp.json") for name in seen)
    assert json.loads(target.read_text())["writer"] in range(8)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text())["writer"] in range(8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    wav = tmp_path / "a.wav"
    with atomic_path(wav) as tmp:
        sf.write(str(tmp), np.zeros(160, np.float32), 16000, subtype="PCM_16")
    assert sf.info(str(wav)).frames == 160
    assert atomic_write_text(tmp_path / "deep" / "x.txt", "é\n").read_text(encoding="utf-8") == "é\n"
