"""`python -m edge_askd_bench.footprint`: cold load, first latency and peak memory per variant, torch-free."""

import json
import subprocess
import sys

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.scoring import wer


def test_footprint_of_each_variant(teacher_export, tmp_path):
    out = tmp_path / "footprint.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_askd_bench.footprint", str(teacher_export), "--clip", "jfk"]
        + ["--threads", "2", "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1 and [p.name for p in tmp_path.iterdir()] == ["footprint.json"]
    # rpi4 target: onnx int8, tflite int8, onnx fp32; all three runtimes are installed here.
    assert [(r["backend"], r["precision"]) for r in result["rows"]] == [
        ("onnxruntime", "int8"),
        ("litert", "int8"),
        ("onnxruntime", "fp32"),
    ]
    for row in result["rows"]:
        assert row["ok"], row["error"]
        assert row["load_s"] > 0 and row["first_transcription_s"] > 0
        assert row["process_to_ready_s"] >= row["load_s"]
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > row["baseline_rss_mb"] > 0
        assert row["audio_s"] == 11.0 and row["size_mb"] > 30
        assert wer([REAL_CLIPS["jfk"].text], [row["text"]]) <= 0.05, row["text"]
    # int8 weights must show in memory too, not only on disk.
    rows = {(r["backend"], r["precision"]): r for r in result["rows"]}
    assert rows[("onnxruntime", "int8")]["model_rss_mb"] < rows[("onnxruntime", "fp32")]["model_rss_mb"]


def test_footprint_fails_loudly_when_torch_is_imported(teacher_export):
    from edge_askd.real_clips import fetch_clip

    code = (
        "import sys, time, torch\n"
        "from edge_askd_bench.footprint import main\n"
        f"sys.exit(main(['--child', {str(teacher_export)!r}, 'onnxruntime', 'int8', {str(fetch_clip('jfk'))!r},"
        " '2', repr(time.time())]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3 and "torch imported in the device runtime's process" in proc.stderr
