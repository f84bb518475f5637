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


def test_a_decoder_that_updates_its_cache_decodes_as_the_host_cache_loop(teacher_dir, teacher_export, tmp_path):
    """The GPU variant's decoder (cache update in the graph, the cache kept by the adapter with IO binding) on a
    real onnxruntime session, here on the CPU: the same greedy tokens and teacher-forced logits as the host-cache
    loop on real clips, with the loop's own cache never touched. On a Jetson the same code binds CUDA memory."""
    import dataclasses

    import numpy as np

    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_export.graphs import load_model
    from edge_askd_export.onnx_export import export_decoder
    from edge_askd_runtime.audio import load_audio
    from edge_askd_runtime.backends import load_backend
    from edge_askd_runtime.decoding import allocate_cache, forced_logits, greedy_decode
    from edge_askd_runtime.transcriber import SAMPLE_RATE

    decoder = export_decoder(load_model(teacher_dir("tiny.en")), tmp_path / "decoder.cache_in_graph.onnx", True)
    host = Transcriber(teacher_export, backend="onnxruntime", precision="fp32")
    assert not host.backend.cache_in_graph
    io = host.variant["io"]
    outputs = ["logits"] + [name.replace("new_", "out_") for name in io["decoder_outputs"][1:]]
    spec = dataclasses.replace(
        host.backend.spec, decoder=decoder, decoder_outputs=outputs, dynamic_cache=False, cache_in_graph=True
    )
    device_side = load_backend("onnx", spec)
    assert device_side.cache_in_graph and device_side.multi_token and not device_side.dynamic_cache
    untouched = allocate_cache([tuple(s) for s in io["cache_shapes"]])
    for name in ("jfk", "arctic_a0009", "librivox_0870"):
        audio = load_audio(fetch_clip(name))
        cross = host.backend.run_encoder(host.mel(audio))
        want = greedy_decode(host.backend, cross, host.settings, len(audio) / SAMPLE_RATE, host._cache)
        got = greedy_decode(device_side, cross, host.settings, len(audio) / SAMPLE_RATE, untouched)
        assert got.tokens == want.tokens and len(got.tokens) > 5, REAL_CLIPS[name].text
        ids = list(host.settings.prompt) + want.tokens[:8]
        np.testing.assert_allclose(
            forced_logits(device_side, cross, ids, untouched),
            forced_logits(host.backend, cross, ids, host._cache),
            atol=1e-3,
        )
    assert not any(layer.any() for layer in untouched)
