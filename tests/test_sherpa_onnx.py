"""`--format sherpa-onnx`: real sherpa-onnx (the PyPI wheel) runs the export on real speech and writes the same
transcript as edge-askd's own runtime on an edge-askd export of the same checkpoint.

Any error in the layout (input/output order, shapes, the in-graph cache update), the encoder metadata or tokens.txt
makes sherpa-onnx refuse the files or decode different text, so the exact-equality asserts below catch it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sherpa_onnx  # the test extra installs it: a missing wheel must fail here, not skip

from edge_askd_runtime import Transcriber, load_audio

TARGET = "test-onnx-fp32"  # ONNX fp32 only: the edge-askd side of the comparison, quick to export and gate
TAIL, MIN = 24, 250  # not the defaults: a component that ignored either would change the student's transcripts
# jfk (11 s): the tail margin alone; arctic_a0009 (3.1 s) and arctic_a0007: the minimum context (5 s) applies.
CLIPS = ("jfk", "arctic_a0007", "arctic_a0009")


@pytest.fixture(scope="module")
def onnx_fp32_target():
    from edge_askd_export.targets import TARGETS, Target

    TARGETS[TARGET] = Target(TARGET, (("onnx", "fp32"),), 1, "CPU", "tests: the runtime side of sherpa-onnx parity")
    yield TARGET
    del TARGETS[TARGET]


def _sherpa_export(checkpoint: Path, root: Path, precisions: tuple[str, ...], runtime: Path) -> tuple[Path, Path]:
    """(`runtime`, the sherpa-onnx export of `checkpoint` gated against it); `runtime` is an edge-askd export of the
    same checkpoint with an onnx-fp32 variant."""
    from edge_askd_export.sherpa_onnx_export import export_sherpa_onnx

    export_sherpa_onnx(checkpoint, root / "sherpa-onnx", precisions, gate_clips=CLIPS, runtime_export=runtime)
    return runtime, root / "sherpa-onnx"


@pytest.fixture(scope="module")
def teacher_exports(teacher_dir, teacher_export, tmp_path_factory):
    """The teacher's edge-askd side is the session's rpi4 export of tiny.en (its onnx-fp32 variant)."""
    root = tmp_path_factory.mktemp("sherpa-teacher")
    return _sherpa_export(teacher_dir("tiny.en"), root, ("fp32", "int8"), teacher_export)


@pytest.fixture(scope="module")
def student_exports(teacher_dir, onnx_fp32_target, tmp_path_factory):
    """tiny.en's weights as an unpadded student with a tail margin and a minimum context. Full depth on purpose:
    the 2-layer subset student is untrained and loops, and edge-askd's repetition guard (which sherpa-onnx lacks)
    then cuts its transcripts, so equality would test the guard rather than the export."""
    from edge_askd_export.testing import make_layer_subset_student

    root = tmp_path_factory.mktemp("sherpa-student")
    checkpoint = make_layer_subset_student(teacher_dir("tiny.en"), root / "ckpt", decoder_layers=(0, 1, 2, 3))
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(edge_askd_tail_frames=TAIL, edge_askd_min_frames=MIN)
    (checkpoint / "config.json").write_text(json.dumps(config, indent=2))
    from edge_askd_export.parity import ParityConfig
    from edge_askd_export.pipeline import ExportOptions, export_checkpoint

    parity = ParityConfig(clips=("arctic_a0009",), wer_sets=())
    export_checkpoint(checkpoint, onnx_fp32_target, root / "edge-askd", ExportOptions(parity=parity))
    return _sherpa_export(checkpoint, root, ("fp32",), root / "edge-askd")


def _sherpa(export: Path, precision: str):
    manifest = json.loads((export / "sherpa-onnx.json").read_text())
    files = manifest["variants"][precision]
    return sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(export / files["encoder"]),
        decoder=str(export / files["decoder"]),
        tokens=str(export / manifest["tokens"]),
        language="en",
        task="transcribe",
        num_threads=1,
        tail_paddings=manifest["mel"]["tail_paddings"],
    )


def _decode(recognizer, audio) -> tuple[str, list[str]]:
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, audio)
    recognizer.decode_stream(stream)
    return stream.result.text.strip(), list(stream.result.tokens)


def _transcripts(edge: Path, sherpa: Path, precision: str, real_clip) -> list[tuple[str, str, str]]:
    """(clip, edge-askd's text, sherpa-onnx's text) per clip, after checking that sherpa-onnx's greedy tokens (it
    exposes each as its tokens.txt string) are edge-askd's, one for one."""
    runtime = Transcriber(edge, backend="onnxruntime", precision="fp32", threads=1)
    recognizer = _sherpa(sherpa, precision)
    rows = []
    for name in CLIPS:
        audio = load_audio(real_clip(name))
        ours = runtime.transcribe(audio)
        text, tokens = _decode(recognizer, audio)
        assert tokens == [runtime.detokenizer.decode([t]) for t in ours.tokens], (name, precision)
        rows.append((name, ours.text.strip(), text))
    return rows


def test_teacher_runs_in_sherpa_onnx_as_in_the_runtime(teacher_exports, real_clip):
    edge, sherpa = teacher_exports
    manifest = json.loads((sherpa / "sherpa-onnx.json").read_text())
    assert manifest["mel"]["input"] == "padded_30s" and manifest["mel"]["tail_paddings"] == 3000
    # Exact text: the same greedy tokens from the same graphs on a mel that differs only in sherpa-onnx's
    # kaldi-native-fbank rounding (the 0-valued tail is restored to edge-askd's floor inside the encoder).
    for name, expected, got in _transcripts(edge, sherpa, "fp32", real_clip):
        assert got == expected, name
    # int8 (dynamic, as the board exports): one flipped token on tiny.en would be a regression worth seeing.
    for name, expected, got in _transcripts(edge, sherpa, "int8", real_clip):
        assert got == expected, f"{name} (int8)"


def test_the_export_gates_every_precision_by_running_sherpa_onnx(teacher_exports, teacher_dir, tmp_path):
    """sherpa-onnx.json holds sherpa-onnx's own verdict per precision (against PyTorch and edge-askd's runtime),
    and a broken file (tokens.txt with shifted ids) fails that gate."""
    import shutil

    import onnx

    from edge_askd_export.graphs import load_model
    from edge_askd_export.sherpa_onnx_gate import gate_sherpa_onnx
    from edge_askd_runtime.tokenizer import Detokenizer

    edge, sherpa = teacher_exports
    manifest = json.loads((sherpa / "sherpa-onnx.json").read_text())
    for role in ("encoder", "decoder"):  # both files describe the model, in sherpa-onnx's keys
        graph = onnx.load(str(sherpa / manifest["variants"]["int8"][role]), load_external_data=False)
        props = {p.key: p.value for p in graph.metadata_props}
        assert props["edge_askd_role"] == role and props["n_text_layer"] == "4" and props["sot_sequence"] == "50257"
    parity = manifest["parity"]
    assert parity["clips"] == list(CLIPS) and parity["tool"] == f"sherpa-onnx {sherpa_onnx.__version__}"
    assert parity["runtime_wer"] == parity["pytorch_wer"]  # edge-askd's fp32 runtime is PyTorch's tokens
    for precision in ("fp32", "int8"):
        row = parity["variants"][precision]
        assert row["passed"] and row["same_text_as_runtime"] == len(CLIPS), (precision, row)
        assert row["wer"] == parity["pytorch_wer"]

    broken = tmp_path / "broken"
    shutil.copytree(sherpa, broken)
    rows = [line.split() for line in (broken / "tokens.txt").read_text().splitlines()]
    shifted = [f"{token} {(int(index) + 1) % len(rows)}\n" for token, index in rows]
    (broken / "tokens.txt").write_text("".join(shifted))
    checkpoint = teacher_dir("tiny.en")
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    detok = Detokenizer.from_file(checkpoint / "tokenizer.json", first_special=generation["eos_token_id"])
    files = {"fp32": manifest["variants"]["fp32"]}
    result = gate_sherpa_onnx(
        broken, files, 3000, load_model(checkpoint), generation, detok, manifest["mel"], None, CLIPS[:1]
    )
    row = result["variants"]["fp32"]
    assert not row["passed"] and row["reason"].startswith("WER ") and row["same_text_as_pytorch"] == 0


def test_student_runs_in_sherpa_onnx_with_the_manifest_tail_paddings(student_exports, real_clip):
    edge, sherpa = student_exports
    manifest = json.loads((sherpa / "sherpa-onnx.json").read_text())
    assert manifest["mel"]["tail_frames"] == TAIL and manifest["mel"]["min_frames"] == MIN
    assert manifest["mel"]["tail_paddings"] == 2 * TAIL  # mel frames (10 ms) for encoder frames (20 ms)
    for name, expected, got in _transcripts(edge, sherpa, "fp32", real_clip):
        assert got == expected, name


def test_tokens_txt_round_trips_the_tokenizer(teacher_exports):
    import base64

    from edge_askd_runtime.tokenizer import Detokenizer

    edge, sherpa = teacher_exports
    detok = Detokenizer.from_file(edge / "tokenizer.json", first_special=50256)
    rows = [line.split() for line in (sherpa / "tokens.txt").read_text().splitlines()]
    assert len(rows) == 50256 and [int(i) for _, i in rows] == list(range(50256))  # no special tokens
    for token, index in rows[::997] + rows[-3:]:
        assert base64.b64decode(token).decode("utf-8", errors="replace") == detok.decode([int(index)])


def test_sherpa_onnx_export_refuses_a_directory_without_a_checkpoint(tmp_path):
    from edge_askd_export.sherpa_onnx_export import SherpaOnnxExportError, export_sherpa_onnx

    with pytest.raises(SherpaOnnxExportError, match="config.json: missing"):
        export_sherpa_onnx(tmp_path, tmp_path / "out")
