"""Students cut from the real tiny.en teacher: layer copying, frozen tables, saving, unpadded transcription."""

import pytest
import torch

from edge_askd.distill.student import (
    INPUT_KEY,
    STUDENT_PRESETS,
    build_student,
    greedy_decode,
    load_teacher,
    parameter_counts,
    prompt_ids,
    resolve_preset,
    save_student,
    spaced_layers,
)
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.features import log_mel
from edge_askd_runtime.scoring import wer


@pytest.fixture(scope="module")
def teacher():
    torch.set_num_threads(1)
    return load_teacher("tiny.en")


def test_spaced_layers_match_distil_whisper():
    assert spaced_layers(32, 2) == [0, 31]  # distil-large-v2's decoder
    assert spaced_layers(6, 4) == [0, 1, 3, 5]
    assert spaced_layers(4, 1) == [0]
    assert spaced_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(EdgeAskdError):
        spaced_layers(4, 5)


def test_presets_and_specs_resolve():
    assert resolve_preset("base-e4d2").teacher == "base"
    assert resolve_preset("tiny.en:3:1").encoder_layers == 3
    with pytest.raises(EdgeAskdError, match="unknown student"):
        resolve_preset("huge-e9d9")
    assert all(p.teacher in ("base", "tiny.en") for p in STUDENT_PRESETS.values())


def test_student_copies_teacher_layers_and_freezes_positions(teacher):
    model, _ = teacher
    student = build_student(model, 2, 1)
    t, s = model.state_dict(), student.state_dict()
    # encoder 4 -> 2 keeps teacher layers 0 and 3; decoder 4 -> 1 keeps layer 0
    assert torch.equal(s["model.encoder.layers.1.fc1.weight"], t["model.encoder.layers.3.fc1.weight"].float())
    assert torch.equal(
        s["model.decoder.layers.0.encoder_attn.k_proj.weight"],
        t["model.decoder.layers.0.encoder_attn.k_proj.weight"].float(),
    )
    assert student.proj_out.weight.data_ptr() == student.model.decoder.embed_tokens.weight.data_ptr()
    assert not student.model.encoder.embed_positions.weight.requires_grad
    assert getattr(student.config, INPUT_KEY) == "unpadded"
    counts = parameter_counts(student)
    assert counts.total == 27_114_624 and counts.total < parameter_counts(model).total
    assert counts.trainable == counts.total - 1500 * 384  # only the sinusoidal table is frozen


def test_greedy_decode_equals_hf_generate_on_the_teacher(teacher, real_clip):
    model, _ = teacher
    mel = torch.from_numpy(log_mel(load_audio(real_clip("arctic_a0007")), pad_to_30s=True))
    ours = greedy_decode(model, mel, prompt_ids(model.generation_config))
    with torch.inference_mode():
        ref = model.generate(mel[None])[0].tolist()
    assert ours == [t for t in ref if t < model.generation_config.eos_token_id]


def test_saved_student_transcribes_unpadded_through_hf_transcriber(teacher, real_clip, tmp_path):
    from edge_askd.hf_transcriber import HFTranscriber
    from edge_askd.real_clips import REAL_CLIPS

    model, path = teacher
    full_copy = build_student(model, 4, 4)  # all layers: the teacher's weights on the unpadded input
    out = save_student(full_copy, tmp_path / "student", path)
    tr = HFTranscriber(str(out), threads=1)
    assert tr.unpadded
    result = tr.transcribe(real_clip("jfk"))
    assert wer([REAL_CLIPS["jfk"].text], [result.text]) < 0.1, result.text
