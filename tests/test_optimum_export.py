"""`--format optimum`: a teacher through optimum's own exporter, loaded and run by optimum's real
ORTModelForSpeechSeq2Seq (in its side environment: optimum-onnx needs transformers 4.x), with the same
transcripts as edge-askd's runtime on real speech."""

from __future__ import annotations

import json
import shutil

import pytest

from edge_askd_runtime import Transcriber
from edge_askd_runtime.scoring import normalise

CLIPS = ("jfk", "arctic_a0009")


def test_a_teacher_exported_through_optimum_transcribes_in_optimum_as_in_the_runtime(
    teacher_dir, teacher_export, tmp_path, real_clip
):
    from edge_askd_export.optimum_export import KEPT, UNMERGED, export_optimum

    out = tmp_path / "optimum"
    manifest = json.loads(export_optimum(teacher_dir("tiny.en"), out, gate_clips=CLIPS).read_text())
    assert all((out / name).is_file() for name in KEPT) and not any((out / name).exists() for name in UNMERGED)
    assert {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"} <= set(
        manifest["files"]
    )
    parity = manifest["parity"]
    # The gate itself loaded the files with optimum (a subprocess in the side environment) and decoded the clips.
    assert parity["loader"].startswith("ORTModelForSpeechSeq2Seq") and parity["passed"], parity
    assert parity["clips"] == list(CLIPS) and parity["same_text_as_pytorch"] == len(CLIPS)
    runtime = Transcriber(teacher_export, backend="onnxruntime", precision="fp32")
    for name, text in zip(CLIPS, parity["texts"], strict=True):
        assert normalise(text) == normalise(runtime.transcribe(real_clip(name)).text), name


def test_optimum_export_refuses_a_student_in_one_line(teacher_dir, tmp_path):
    from edge_askd_export.optimum_export import OptimumExportError, export_optimum

    student = tmp_path / "student"
    student.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copyfile(teacher_dir("tiny.en") / name, student / name)
    config = json.loads((teacher_dir("tiny.en") / "config.json").read_text()) | {"edge_askd_input": "unpadded"}
    (student / "config.json").write_text(json.dumps(config))
    with pytest.raises(OptimumExportError) as info:
        export_optimum(student, tmp_path / "out")
    assert "unpadded student" in str(info.value) and "--format sherpa-onnx" in str(info.value)
    assert "\n" not in str(info.value)
