"""The device runtime transcribes real speech with torch and transformers blocked, on every backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.test_device_imports import BLOCKER
from tests.test_export_pipeline import student_checkpoint, student_export  # noqa: F401 (shared session fixtures)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "litert"])
def test_runtime_without_torch(student_export, real_clip, backend):  # noqa: F811
    wav = real_clip("arctic_a0009")
    code = BLOCKER + textwrap.dedent(
        f"""
        import edge_askd_runtime
        from edge_askd_runtime import Transcriber
        from edge_askd_runtime.backends import onnxruntime, openvino, litert
        from edge_askd_runtime import decoding, tokenizer, transcriber
        t = Transcriber({str(student_export)!r}, backend={backend!r}, threads=1)
        r = t.transcribe({str(wav)!r})
        assert r.tokens and r.timings["encode"] > 0, r
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print(t.variant["name"], len(r.tokens))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0].startswith(
        {"onnxruntime": "onnx", "openvino": "openvino", "litert": "tflite"}[backend]
    )
