"""Compute-device selection: the export target's device by default, the CPU with one line when this
onnxruntime lacks the provider, an explicit device that cannot run is an error. No GPU here: on a Jetson the
CUDA path itself was never run (README, board section)."""

import json
import shutil

import pytest

from edge_askd_runtime import ModelError, Transcriber
from edge_askd_runtime.backends import resolve_device

FP16 = {"format": "onnx", "precision": "fp16"}
INT8 = {"format": "onnx", "precision": "int8"}
OPENVINO = {"format": "openvino", "precision": "int8"}


def test_auto_follows_the_target_and_falls_back_to_the_cpu_in_one_line():
    notes = []
    assert resolve_device("auto", FP16, "CUDA", note=notes.append) == "CPU"  # this onnxruntime is CPU-only
    assert len(notes) == 1 and "no CUDAExecutionProvider; running on the CPU" in notes[0]
    assert resolve_device("auto", INT8, "CUDA", note=notes.append) == "CPU"  # int8 is the target's CPU fallback
    assert resolve_device("auto", FP16, "CPU", note=notes.append) == "CPU" and len(notes) == 1


def test_explicit_devices_are_taken_or_refused():
    assert resolve_device("cuda", FP16, "CPU") == "CUDA" and resolve_device("TensorRT", FP16, "CPU") == "TensorRT"
    with pytest.raises(ModelError, match="openvino variants run on the CPU only"):
        resolve_device("cuda", OPENVINO, "CPU")
    with pytest.raises(ModelError, match="unknown compute device 'npu'"):
        resolve_device("npu", FP16, "CPU")


def test_a_jetson_export_runs_here_on_the_cpu_and_an_explicit_cuda_is_one_line(teacher_export, tmp_path, capsys):
    copy = tmp_path / "jetson"
    shutil.copytree(teacher_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["target"]["device"] = "CUDA"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    tr = Transcriber(copy, backend="onnxruntime", precision="fp32")
    assert tr.device == "CPU" and tr.describe()["device"] == "CPU"
    assert capsys.readouterr().err.count("running on the CPU") == 1
    with pytest.raises(ModelError) as info:
        Transcriber(copy, backend="onnxruntime", precision="fp32", device="cuda")
    assert "lacks CUDAExecutionProvider" in str(info.value) and "\n" not in str(info.value)
