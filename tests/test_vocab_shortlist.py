"""The shortlisted output vocabulary: the ranking, the id map, and a shortlisted export that is exactly the
full-vocabulary export with the other tokens suppressed."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edge_askd_runtime import ModelError, Transcriber, load_audio
from edge_askd_runtime.decoding import DecodeSettings
from edge_askd_runtime.tokenizer import Detokenizer
from edge_askd_runtime.vocab import VocabMap


@pytest.fixture(scope="module")
def tiny_tokenizer(teacher_dir):
    path = teacher_dir("tiny.en") / "tokenizer.json"
    generation = json.loads((teacher_dir("tiny.en") / "generation_config.json").read_text())
    return path, generation


def test_shortlist_keeps_what_decoding_needs_and_is_deterministic(tiny_tokenizer):
    from edge_askd_export.shortlist import build_shortlist, ranked_ids

    path, gen = tiny_tokenizer
    eos, no_ts = gen["eos_token_id"], gen["no_timestamps_token_id"]
    ids = build_shortlist(path, eos, no_ts, 4096)
    assert len(ids) == 4096 and ids == sorted(set(ids))
    assert set(range(eos, no_ts + 1)) <= set(ids)  # eos, sot, task tokens, no-timestamps
    assert max(ids) == no_ts  # no timestamp token: a no-timestamps prompt never emits one
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    for word in (" the", " The", " and", ".", ",", " 7"):  # common words, punctuation, digits
        assert all(i in ids for i in tok.encode(word, add_special_tokens=False).ids), word
    # Deterministic (a second, independent ranking gives the same ids), and a larger K extends a smaller one (one
    # ranking, cut at K).
    ranked, always = ranked_ids(path, eos, no_ts)
    assert sorted(ranked[:4096]) == ids and always < 4096
    assert set(ids) <= set(ranked[:8192])


def test_shortlist_smaller_than_the_tokens_decoding_needs_is_one_line(tiny_tokenizer):
    from edge_askd_export.shortlist import build_shortlist
    from edge_askd_runtime.errors import EdgeAskdError

    path, gen = tiny_tokenizer
    with pytest.raises(EdgeAskdError, match="below the .* tokens decoding always needs"):
        build_shortlist(path, gen["eos_token_id"], gen["no_timestamps_token_id"], 300)


def test_vocab_map_translates_settings_tokens_and_text(tiny_tokenizer):
    path, gen = tiny_tokenizer
    eos = gen["eos_token_id"]
    ids = np.asarray([11, 13, 262, 383, 1110, eos, eos + 1, eos + 5], dtype=np.int64)
    vocab = VocabMap(ids)
    settings = DecodeSettings(prompt=(eos + 1, eos + 5), eos=eos, suppress_tokens=(13, 400, eos + 5))
    mapped = vocab.settings(settings)
    assert mapped.prompt == (6, 7) and mapped.eos == 5
    assert mapped.suppress_tokens == (1, 7)  # 400 is outside the shortlist: it cannot be emitted anyway
    assert vocab.to_full([2, 4, 0]) == [262, 1110, 11]
    full = Detokenizer.from_file(path, first_special=eos)
    assert vocab.detokenizer(full).decode([2, 4, 5, 6]) == full.decode([262, 1110])
    with pytest.raises(ModelError, match="not in this export's shortlisted vocabulary"):
        vocab.to_graph([400])
    identity = VocabMap()
    assert identity.settings(settings) is settings and identity.to_full([400]) == [400]


SHORTLIST = 8192


@pytest.fixture(scope="module")
def shortlisted_teacher(teacher_dir, tmp_path_factory):
    """tiny.en (a trained model) exported to ONNX fp32 with 8192 of its tokens, gated on the 7 clips."""
    from edge_askd_export.parity import DEFAULT_CLIPS, ParityConfig
    from edge_askd_export.pipeline import ExportOptions
    from edge_askd_export.targets import TARGETS, Target
    from edge_askd_export.testing import export_once

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TARGETS, "onnx-fp32", Target("onnx-fp32", (("onnx", "fp32"),), 2, "CPU", "tests"))
        out = tmp_path_factory.getbasetemp() / "tiny_shortlisted"
        export_once(
            teacher_dir("tiny.en"),
            "onnx-fp32",
            out,
            ExportOptions(parity=ParityConfig(clips=DEFAULT_CLIPS[:3], wer_sets=()), vocab=SHORTLIST),
        )
    return out


def test_shortlisted_export_is_the_full_vocabulary_with_the_rest_suppressed(shortlisted_teacher, teacher_export):
    """On real speech (the parity clips and the clean-en set), the K-row graph's tokens and text are exactly those
    of the full-vocabulary export with every token outside the shortlist suppressed, in tokenizer ids."""
    import onnx

    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_export.parity import DEFAULT_CLIPS, ParityConfig, load_wer_sets

    manifest = json.loads((shortlisted_teacher / "manifest.json").read_text())
    record = manifest["tokenizer"]["shortlist"]
    assert record["size"] == SHORTLIST and record["vocab_size"] == 51864
    assert record["file"] in manifest["files"]  # hashed like the graphs
    (variant,) = manifest["variants"]
    assert variant["valid"], variant["parity"]["reason"]
    assert variant["parity"]["max_logit_diff"] <= 1e-3
    decoder = onnx.load(str(shortlisted_teacher / variant["files"]["decoder"]), load_external_data=False)
    (logits,) = [o for o in decoder.graph.output if o.name == "logits"]
    assert logits.type.tensor_type.shape.dim[-1].dim_value == SHORTLIST

    short = Transcriber(shortlisted_teacher, threads=2)
    full = Transcriber(teacher_export, backend="onnxruntime", precision="fp32", threads=2)
    assert "shortlist" not in full.manifest["tokenizer"] and not full.vocab.shortlisted  # exports are full by default
    kept = set(short.vocab.ids.tolist())
    outside = [i for i in range(51864) if i not in kept]
    full.settings = replace(full.settings, suppress_tokens=tuple(sorted({*full.settings.suppress_tokens, *outside})))
    audio = [load_audio(fetch_clip(name)) for name in DEFAULT_CLIPS]
    # Every third clean-en clip: 9 more real speakers, at a third of the suite time of all 26.
    audio += [clip.audio for clip in load_wer_sets(ParityConfig(wer_sets=("clean-en",)))][::3]
    assert len(audio) == len(DEFAULT_CLIPS) + 9
    for samples in audio:
        ours, theirs = short.transcribe(samples), full.transcribe(samples)
        assert ours.tokens == theirs.tokens and ours.text == theirs.text
        assert all(t in kept for t in ours.tokens)
    assert short.greedy_tokens(audio[0]) == full.greedy_tokens(audio[0])
    assert REAL_CLIPS[DEFAULT_CLIPS[0]].text.split()[0] in short.transcribe(audio[0]).text


def test_vocab_option_takes_full_or_a_size_in_one_line():
    import argparse

    from edge_askd_export.cli import _vocab
    from edge_askd_export.pipeline import ExportError, ExportOptions

    assert _vocab("full") == "full" and _vocab("32768") == 32768
    for bad in ("auto", "0", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="use full or a positive number"):
            _vocab(bad)
    with pytest.raises(ExportError, match="use full or a number of tokens"):
        ExportOptions(vocab="auto")


def test_shortlisted_export_refuses_other_languages_in_one_line(shortlisted_teacher):
    with pytest.raises(ModelError, match="shortlisted to English.*--vocab full"):
        Transcriber(shortlisted_teacher, language="fr")
