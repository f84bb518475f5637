"""The tail margin and the minimum context are one convention: training examples, the saved student, the export
manifest, the parity gate's input, the device runtime and the PyTorch transcriber all append the same silence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.features import ENCODER_FRAME_SAMPLES, HOP_LENGTH, N_FRAMES_30S, log_mel, with_tail

TAIL = 24  # not the default, so a component that silently used the default (or 0) would fail
MIN = 250  # 5 s, not the default either: longer than the 3.1 s test clip plus its tail


def test_with_tail_appends_silence_and_never_passes_30_s():
    audio = np.ones(16000, dtype=np.float32)
    tailed = with_tail(audio, TAIL)
    assert len(tailed) == 16000 + TAIL * ENCODER_FRAME_SAMPLES and not tailed[16000:].any()
    assert log_mel(audio, pad_to_30s=False, tail_frames=TAIL).shape[1] == len(tailed) // HOP_LENGTH
    assert len(with_tail(np.ones(30 * 16000 - 100, dtype=np.float32), TAIL)) == 30 * 16000
    assert log_mel(audio, pad_to_30s=True, tail_frames=TAIL).shape[1] == N_FRAMES_30S  # teachers: no margin
    with pytest.raises(ValueError, match="tail_frames"):
        with_tail(audio, 1000)


def test_the_minimum_context_pads_short_audio_only():
    short, long = np.ones(16000, dtype=np.float32), np.ones(8 * 16000, dtype=np.float32)
    assert len(with_tail(short, TAIL, MIN)) == MIN * ENCODER_FRAME_SAMPLES  # 1 s -> 5 s of context
    assert not with_tail(short, TAIL, MIN)[16000:].any()
    assert len(with_tail(long, TAIL, MIN)) == len(long) + TAIL * ENCODER_FRAME_SAMPLES  # the tail alone
    assert len(with_tail(short, TAIL, 1500)) == 30 * 16000
    with pytest.raises(ValueError, match="min_frames"):
        with_tail(short, TAIL, 1501)


@pytest.fixture(scope="module")
def tailed_student(teacher_dir, tmp_path_factory):
    """tiny.en with 2 decoder layers (untrained), built with TAIL and exported for jetson-orin (ONNX only)."""
    from edge_askd.distill.student import build_student, load_teacher, save_student
    from edge_askd_export.parity import ParityConfig
    from edge_askd_export.pipeline import ExportOptions, export_checkpoint

    root = tmp_path_factory.mktemp("tail")
    teacher, path = load_teacher("tiny.en")
    checkpoint = save_student(build_student(teacher, 4, 2, tail_frames=TAIL, min_frames=MIN), root / "student", path)
    export = root / "export"
    # An untrained 2-layer decoder: the WER budget is beside the point here, the convention is.
    options = ExportOptions(
        parity=ParityConfig(clips=("arctic_a0009",), wer_budget=100.0, wer_sets=(), min_token_agreement=0.0), threads=1
    )
    export_checkpoint(checkpoint, "jetson-orin", export, options)
    return checkpoint, export


def test_tail_margin_is_the_same_in_training_export_and_runtime(tailed_student, real_clip):
    from edge_askd.distill.dataset import Clip, DistillDataset, TargetBuilder
    from edge_askd.distill.student import greedy_decode, prompt_ids
    from edge_askd.hf_transcriber import HFTranscriber
    from edge_askd_runtime.transcriber import Transcriber

    checkpoint, export = tailed_student
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["edge_askd_tail_frames"] == TAIL and config["edge_askd_min_frames"] == MIN
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["mel"]["tail_frames"] == TAIL and manifest["mel"]["min_frames"] == MIN

    path = real_clip("arctic_a0009")
    audio = load_audio(path)
    assert len(audio) + TAIL * ENCODER_FRAME_SAMPLES < MIN * ENCODER_FRAME_SAMPLES  # the minimum context applies
    expected_frames = MIN * ENCODER_FRAME_SAMPLES // HOP_LENGTH
    runtime = Transcriber(export, backend="onnxruntime", precision="fp32", threads=1)
    runtime_mel = runtime.mel(audio)
    assert runtime_mel.shape[-1] == expected_frames

    hf = HFTranscriber(str(checkpoint), threads=1)
    assert hf.tail_frames == TAIL and hf.min_frames == MIN
    targets = TargetBuilder(hf.tokenizer, hf.prompt_ids(), hf.model.generation_config.eos_token_id, 448)
    example = DistillDataset([Clip(path, "x", len(audio) / 16000)], targets, tail_frames=TAIL, min_frames=MIN)[0]
    assert np.array_equal(example["student_mel"].numpy(), runtime_mel[0])

    # Same input, same model: the runtime's fp32 tokens are PyTorch's on the training example's mel.
    expected = greedy_decode(hf.model, example["student_mel"], prompt_ids(hf.model.generation_config))
    assert runtime.transcribe(audio).tokens == expected
    assert hf.transcribe(audio).tokens == expected
    variant = next(v for v in manifest["variants"] if v["name"] == "onnx-fp32")
    assert variant["valid"] and variant["parity"]["greedy_identical"] == variant["parity"]["clips"]


def test_exports_from_before_the_margin_read_as_zero(tailed_student, tmp_path):
    """A manifest without mel.tail_frames (older exports) runs with no margin rather than failing."""
    import shutil

    from edge_askd_runtime.transcriber import Transcriber

    _, export = tailed_student
    old = tmp_path / "old"
    shutil.copytree(export, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["mel"]["tail_frames"], manifest["mel"]["min_frames"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    audio = np.zeros(8000, dtype=np.float32)
    assert Transcriber(old, backend="onnxruntime", precision="fp32", threads=1).mel(audio).shape[-1] == 50
