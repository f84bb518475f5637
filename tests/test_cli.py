"""`edge-askd transcribe` end to end with the real teachers on real speech."""

import json
import subprocess
import sys

import pytest

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.scoring import wer


def edge_askd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_askd.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("model", ["teacher:tiny.en", "teacher:base"])
def test_transcribe_real_clip(real_clip, model):
    proc = edge_askd("transcribe", str(real_clip("jfk")), "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert wer([REAL_CLIPS["jfk"].text], [proc.stdout.strip()]) <= 0.05


def test_json_output_and_bad_file_does_not_lose_others(real_clip, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    good = real_clip("arctic_a0009")
    proc = edge_askd("transcribe", str(bad), str(good), "--model", "teacher:tiny.en", "--format", "json")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-askd: error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0] and "Traceback" not in proc.stderr
    row = json.loads(proc.stdout.strip())
    assert row["file"] == str(good) and row["audio_seconds"] == pytest.approx(3.1, abs=0.1)
    assert wer([REAL_CLIPS["arctic_a0009"].text], [row["text"]]) <= 0.2


# An interpreter in which torch and transformers cannot be imported, as on a board.
WITHOUT_TORCH = (
    "import sys\n"
    "class NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'transformers'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, NoTorch())\n"
    "from edge_askd.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["transcribe", "missing.wav", "--model", "teacher:tiny.en"], "missing.wav: audio file not found"),
        (["transcribe", "{clip}", "--model", "teacher:large"], "unknown teacher 'teacher:large'; known teachers"),
        (["transcribe", "{clip}", "--model", "/nonexistent/dir"], "/nonexistent/dir: no such export directory"),
        (["data", "clip", "nope"], "unknown clip 'nope'; known clips: jfk"),
    ],
)
def test_errors_are_one_line_and_come_before_any_model_load(args, message, real_clip):
    """Run where torch cannot be imported: each error is found before a model (a PyTorch teacher here) would load,
    so it is the error itself, not "needs PyTorch", and it takes no model-load time."""
    args = [a.format(clip=real_clip("arctic_a0009")) for a in args]
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("edge-askd: error:")]) == 1


def test_the_autotuned_default_brings_its_backend_precision_and_threads(teacher_export, tmp_path, monkeypatch):
    from edge_askd.load import load_transcriber

    monkeypatch.setenv("EDGE_ASKD_CACHE", str(tmp_path))
    default = {"model": str(teacher_export), "backend": "onnxruntime", "precision": "fp32", "threads": 1}
    (tmp_path / "device.json").write_text(json.dumps(default))
    chosen = load_transcriber(None)
    assert (chosen.variant["format"], chosen.variant["precision"]) == ("onnx", "fp32")
    assert chosen.backend.encoder.get_session_options().intra_op_num_threads == 1
    # Both sessions' threads stop spinning when a run ends, so neither steals the cores the other runs on next;
    # neither holds a memory plan per input shape (every utterance and cache length is one); both allocate from
    # the process's one CPU arena, so the encoder's activations and the decoder's are not held side by side.
    for session in (chosen.backend.encoder, chosen.backend.decoder):
        options = session.get_session_options()
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
        assert not options.enable_mem_pattern
        assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert load_transcriber(None, precision="int8").variant["precision"] == "int8"  # the command line wins
    (tmp_path / "device.json").write_text(json.dumps(default | {"model": str(tmp_path / "gone")}))
    with pytest.raises(EdgeAskdError, match="autotuned model is gone; pass --model or re-run"):
        load_transcriber(None)


def test_a_mistyped_export_path_on_a_board_without_torch_is_one_line(tmp_path):
    clip = tmp_path / "x.wav"
    clip.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "transcribe", str(clip), "--model", "exports/rpi5-typo"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "exports/rpi5-typo: no such export directory; pass --model DIR with a manifest.json" in proc.stderr
