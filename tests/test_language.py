"""Runtime language and task for multilingual exports (the base teacher), and the refusals for English-only ones."""

import pytest

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime import ModelError, Transcriber, load_audio
from edge_askd_runtime.scoring import wer


@pytest.fixture(scope="module")
def base_export(teacher_dir, tmp_path_factory, monkeypatch_module):
    """The multilingual base teacher, ONNX fp32 only, gated on one clip: the cheapest multilingual export."""
    from edge_askd_export.parity import ParityConfig
    from edge_askd_export.pipeline import ExportOptions
    from edge_askd_export.targets import TARGETS, Target
    from edge_askd_export.testing import export_once

    monkeypatch_module.setitem(TARGETS, "onnx-fp32", Target("onnx-fp32", (("onnx", "fp32"),), 2, "CPU", "tests"))
    out = tmp_path_factory.getbasetemp() / "base_onnx_fp32"
    export_once(teacher_dir("base"), "onnx-fp32", out, ExportOptions(parity=ParityConfig(clips=("jfk",), wer_sets=())))
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_detects_english_and_transcribes_with_the_detected_prompt(base_export, real_clip):
    clip = real_clip("jfk")
    auto = Transcriber(base_export, language="auto")
    language, probability = auto.detect_language(load_audio(clip))
    assert language == "en" and probability > 0.9
    result = auto.transcribe(clip)
    assert result.language == "en" and result.language_probability == pytest.approx(probability, abs=1e-6)
    assert wer([REAL_CLIPS["jfk"].text], [result.text]) <= 0.1
    english = Transcriber(base_export).transcribe(clip)
    assert english.tokens == result.tokens and english.language == "en" and english.language_probability is None


def test_language_and_task_build_their_own_prompt(base_export):
    manifest = Transcriber(base_export).manifest
    tok = manifest["tokenizer"]
    french = Transcriber(base_export, language="fr", task="translate")
    assert french.settings.prompt == (
        tok["sot"],
        tok["lang_to_id"]["<|fr|>"],
        tok["task_to_id"]["translate"],
        tok["no_timestamps"],
    )
    assert french.language == "fr"
    with pytest.raises(ModelError, match="unknown language 'xx' for this export; known: af, am, ar"):
        Transcriber(base_export, language="xx")


def test_an_english_only_export_refuses_other_languages_in_one_line(teacher_export):
    with pytest.raises(ModelError) as info:
        Transcriber(teacher_export, language="fr")
    assert "English-only" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="English-only; language detection needs a multilingual one"):
        Transcriber(teacher_export, language="auto")
    assert Transcriber(teacher_export, language="en").settings.prompt == tuple(
        Transcriber(teacher_export).manifest["tokenizer"]["prompt"]
    )
