"""`edge-askd bench` end to end with real peers (small form), plus the autotune rule and host detection."""

import json
import subprocess
import sys

import pytest

from edge_askd_bench.autotune import choose, read_device_default, write_device_default
from edge_askd_bench.host import describe_host
from edge_askd_runtime import Transcriber
from edge_askd_runtime.errors import EdgeAskdError


def test_bench_peers_side_by_side(tmp_path):
    out = tmp_path / "bench"
    peers = "pytorch:teacher:tiny.en,faster-whisper:tiny.en:int8,faster-whisper:no-such-model"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_askd.cli",
            "bench",
            "--peers",
            peers,
            "--lengths",
            "2,5",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--reference",
            "pytorch:teacher:tiny.en",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert result["schema_version"] == 1
    assert result["host"]["cpu"]["cores"] >= 1
    rows = {(r["candidate"], r["audio_s"]): r for r in result["rows"]}
    assert set(rows) == {(p, s) for p in peers.split(",")[:2] for s in (2.0, 5.0)}
    for row in rows.values():
        assert row["e2e_ms"]["median"] > 0 and row["encoder_ms"] > 0 and row["load_s"] > 0
        # Peers do not time their decoder: it is e2e less their (separately timed) encoder and front end.
        assert row["front_end_ms"] > 0 and row["rest_ms"] == 0
        assert row["decode_ms"] == pytest.approx(
            max(row["e2e_ms"]["median"] - row["encoder_ms"] - row["front_end_ms"], 0.0)
        )
        assert row["peak_rss_mb"] > 50 and row["size_mb"] > 70
        assert row["first_result_s"] >= row["load_s"]
        assert row["wer"] < 0.1  # tiny.en on the real clips: about 2-4 %
        assert row["rtf"] == pytest.approx(row["e2e_ms"]["median"] / 1000 / row["audio_s"])
    # The per-token floor: tiny.en's decoder weights (fp32, tied projection once, ~4 x 29.5M bytes) over the
    # host's copy bandwidth; a real step is slower than streaming its weights once.
    assert result["host"]["copy_bandwidth_gbs"] > 0.5
    for (spec, _), row in rows.items():
        if spec.startswith("pytorch"):
            assert 80e6 < row["decoder_bytes"] < 130e6
            assert row["x_of_floor"] == pytest.approx(row["ms_per_token"] / row["floor_ms_per_token"])
            assert row["x_of_floor"] > 1
        else:
            assert row["floor_ms_per_token"] is None  # CTranslate2's files do not separate the decoder
    assert "faster-whisper:no-such-model" in result["missing"]
    table = (out / "results.md").read_text()
    assert "| pytorch:teacher:tiny.en |" in table and "speed-up vs pytorch:teacher:tiny.en" in table
    assert "x of floor" in table and "copy bandwidth" in table and "front end ms" in table
    for png in ("latency_vs_wer.png", "latency_breakdown.png", "latency_vs_length.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(candidate, kind, wer, ms, audio_s=5.0):
    return {
        "candidate": candidate,
        "kind": kind,
        "model": candidate,
        "wer": wer,
        "audio_s": audio_s,
        "e2e_ms": {"median": ms},
    }


def test_autotune_picks_fastest_runtime_within_budget(tmp_path):
    result = {
        "rows": [
            _row("pytorch:teacher:base", "pytorch", 0.050, 1000),
            _row("runtime:a", "runtime", 0.055, 120),
            _row("runtime:b", "runtime", 0.090, 40),  # fastest but 4 points worse than the best
            _row("runtime:c", "runtime", 0.052, 150),
        ]
    }
    assert choose(result, wer_budget=0.01)["candidate"] == "runtime:a"
    assert choose(result, wer_budget=0.05)["candidate"] == "runtime:b"
    path = write_device_default(choose(result), tmp_path / "device.json")
    assert read_device_default(path)["candidate"] == "runtime:a"


def test_autotune_keeps_backend_precision_threads_and_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    row = _row("runtime:exports/x86:openvino:int8", "runtime", 0.05, 120) | {"threads": 2}
    default = read_device_default(write_device_default(row, tmp_path / "device.json"))
    assert default["model"] == str(tmp_path / "exports" / "x86")
    assert (default["backend"], default["precision"], default["threads"]) == ("openvino", "int8", 2)


def test_autotune_refuses_when_nothing_qualifies():
    with pytest.raises(EdgeAskdError, match="within 1.0 WER points"):
        choose({"rows": [_row("pytorch:teacher:base", "pytorch", 0.05, 1000), _row("runtime:x", "runtime", 0.2, 9)]})


def test_host_description():
    host = describe_host()
    assert host["cpu"]["arch"] and host["ram_gib"] > 0 and "numpy" in host["libraries"]


def test_decoder_calls_bench_splits_the_decode_time(teacher_export, capsys):
    """`python -m edge_askd_bench.decoder_calls`: per way of calling the decoder, the decode time inside the
    backend's calls and in the loop around them, the first call apart; the runtime's way makes one call for the
    whole prompt, the stepwise ways one per prompt token, and all three decode the same tokens."""
    from edge_askd_bench.decoder_calls import main, measure

    prompt = len(Transcriber(teacher_export, backend="onnxruntime", threads=1).settings.prompt)
    rows = measure(teacher_export, [3.0], repeats=1, threads=1)
    variants = {r["variant"] for r in rows}
    assert {"onnx-int8", "onnx-fp32"} <= variants
    for variant in variants:
        ways = {r["way"]: r for r in rows if r["variant"] == variant}
        runtime = ways["one-call prompt, filled slots"]
        assert runtime["calls"] == runtime["tokens"] + 1  # the prompt's call, then one per token (the last gives eos)
        for way in ("stepwise prompt, filled slots", "stepwise prompt, all 448 slots"):
            assert ways[way]["tokens"] == runtime["tokens"] and ways[way]["calls"] == runtime["calls"] + prompt - 1
        for r in ways.values():
            assert 0 < r["backend_ms"] <= r["decode_ms"]
            assert r["loop_ms"] == pytest.approx(r["decode_ms"] - r["backend_ms"])
            assert r["first_call_ms"] > 0 and r["call_ms"] > 0
    assert main(["--model", str(teacher_export), "--lengths", "2", "--repeats", "1", "--threads", "1"]) == 0
    assert "| in the backend ms | loop ms | first call ms | other calls ms |" in capsys.readouterr().out


def test_draft_head_bench_scores_drafts_on_unseen_speech_and_prices_them(teacher_export, tmp_path, capsys):
    """`python -m edge_askd_bench.draft_head`: a draft head trained on one real set is scored on another, per
    confidence threshold (everything drafted at 0), and priced with the decoder's measured 1/2/3-token calls."""
    import json

    from edge_askd.data.real_sets import build_real_sets
    from edge_askd_bench.draft_head import main

    build_real_sets(tmp_path / "sets", ("telephone-en",))
    out = tmp_path / "draft.json"
    argv = ["--checkpoint", "teacher:tiny.en", "--export", str(teacher_export), "--sets", str(tmp_path / "sets")]
    argv += ["--train", "telephone-en/train.jsonl", "--eval", "telephone-en/dev.jsonl", "--max-clips", "6"]
    assert main([*argv, "--epochs", "3", "--lengths", "3", "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["train_positions"] > 6
    scored = result["sets"]["telephone-en/dev.jsonl"]
    assert scored["positions"] > 6
    rows = scored["thresholds"]
    assert rows[0]["threshold"] == 0.0 and rows[0]["drafted"] == 1.0
    assert all(0.0 <= r["accepted"] <= 1.0 for r in rows)
    assert [r["drafted"] for r in rows] == sorted((r["drafted"] for r in rows), reverse=True)
    assert sorted(result["call_ms"]["3.0"]) == ["1", "2", "3"] and all(v > 0 for v in result["call_ms"]["3.0"].values())
    printed = capsys.readouterr().out
    assert "| telephone-en/dev.jsonl | 0.0 | 1.00 |" in printed and "a decoder call fed 1 / 2 / 3 tokens" in printed

    assert main([*argv[:6], "--train", "nowhere/train.jsonl"]) == 2
    assert "nowhere/train.jsonl: no such manifest" in capsys.readouterr().err
