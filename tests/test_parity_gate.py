"""The parity gate's rule on constructed results: no model, no export (the end-to-end check of the real-set gate
is tests/test_export_pipeline.py::test_quantized_gate_judges_on_the_real_sets)."""

from __future__ import annotations

import argparse

import pytest

from edge_askd_export.parity import ParityConfig, ParityResult, count_words, gate, spaced
from edge_askd_runtime.scoring import wer

# ~1000 reference words in 158 short sentences, like clean-en + telephone-dev (855 words in 157 clips).
SENTENCES = [f"please say the number {i} after the tone now" for i in range(66)]
SENTENCES += ["thank you for calling goodbye"] * 92


def _result(references: list[str], hypotheses: list[str], pytorch: list[str], agreement: float) -> ParityResult:
    return ParityResult(
        passed=False,
        max_logit_diff=None,
        greedy_identical=0,
        token_agreement=agreement,
        wer=100.0 * wer(references, hypotheses),
        reference_wer=100.0 * wer(references, pytorch),
        clips=len(references),
        words=count_words(references),
        sets={"clean-en": {"wer": 100.0 * wer(references, hypotheses)}},
    )


def _one_wrong_word(texts: list[str]) -> list[str]:
    first = texts[0].split()
    return [" ".join(["wrong", *first[1:]]), *texts[1:]]


def test_one_extra_wrong_word_on_a_thousand_words_passes():
    words = count_words(SENTENCES)
    assert 900 <= words <= 1100
    result = gate(_result(SENTENCES, _one_wrong_word(SENTENCES), SENTENCES, 0.99), "int8", ParityConfig(), None)
    assert result.passed, result.reason
    assert result.wer == pytest.approx(100.0 / words) and result.baseline_wer == 0.0


def test_one_wrong_word_on_the_seven_clips_fails_the_same_budget():
    """Why the quantized gate left the 7 short clips: 94 words, one word = 1.06 points > the 1.0 budget."""
    from edge_askd.real_clips import REAL_CLIPS
    from edge_askd_export.parity import DEFAULT_CLIPS

    short = [REAL_CLIPS[name].text for name in DEFAULT_CLIPS]
    assert count_words(short) == 94
    result = gate(_result(short, _one_wrong_word(short), short, 0.99), "int8", ParityConfig(), None)
    assert not result.passed and "budget 1.00" in result.reason


def test_agreement_below_the_minimum_fails_even_within_the_wer_budget():
    result = gate(_result(SENTENCES, SENTENCES, SENTENCES, 0.85), "int8", ParityConfig(min_token_agreement=0.9), None)
    assert not result.passed
    assert result.reason.startswith("token agreement with PyTorch 0.850 < 0.900") and "\n" not in result.reason
    assert gate(_result(SENTENCES, SENTENCES, SENTENCES, 0.95), "int8", ParityConfig(), None).passed


def test_losing_more_than_the_budget_names_the_wer_the_baseline_and_the_sets():
    worse = [s.replace("number", "numb") for s in SENTENCES[:20]] + SENTENCES[20:]
    result = gate(_result(SENTENCES, worse, SENTENCES, 0.99), "fp16", ParityConfig(), fp32_wer=0.5)
    assert not result.passed and "\n" not in result.reason
    assert result.reason.startswith(f"WER {result.wer:.2f} > fp32 0.50 + budget 1.00 on {result.words} words")
    assert "clean-en" in result.reason and result.baseline_wer == 0.5


def test_fp32_stays_strict_and_needs_logits():
    base = dict(passed=False, token_agreement=1.0, wer=0.0, reference_wer=0.0, clips=7)
    assert gate(ParityResult(max_logit_diff=5e-4, greedy_identical=7, **base), "fp32", ParityConfig(), None).passed
    failed = gate(ParityResult(max_logit_diff=2e-3, greedy_identical=7, **base), "fp32", ParityConfig(), None)
    assert failed.reason == "max logit diff 2.00e-03 > 1e-03"
    failed = gate(ParityResult(max_logit_diff=5e-4, greedy_identical=6, **base), "fp32", ParityConfig(), None)
    assert failed.reason == "greedy tokens differ from PyTorch on 1 clip(s)"
    assert not gate(ParityResult(max_logit_diff=None, greedy_identical=7, **base), "fp32", ParityConfig(), None).passed


def test_subsets_are_evenly_spaced_and_sets_are_checked():
    items = list(range(132))
    assert spaced(items, None) == items and spaced(items, 500) == items
    subset = spaced(items, 4)
    assert subset == [0, 33, 66, 99]
    with pytest.raises(Exception, match="unknown parity set"):
        ParityConfig(wer_sets=("telephone-train",))


def test_cli_parity_flags():
    from edge_askd_export.cli import add_export_parser, parity_config

    parser = argparse.ArgumentParser(prog="edge-askd")
    add_export_parser(parser.add_subparsers(dest="command"))
    base = ["export", "teacher:tiny.en", "--target", "x86", "--out", "/tmp/x"]
    assert parity_config(parser.parse_args(base)) == ParityConfig()
    quick = parity_config(parser.parse_args([*base, "--parity-set", "clips7", "--wer-budget", "2"]))
    assert quick.wer_sets == () and quick.wer_budget == 2.0
    custom = parity_config(parser.parse_args([*base, "--parity-max-clips", "10", "--min-token-agreement", "0.8"]))
    assert custom.max_clips_per_set == 10 and custom.min_token_agreement == 0.8
