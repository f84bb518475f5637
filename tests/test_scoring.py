"""WER scoring: Whisper's normaliser plus the project's one addition (digit strings written either way)."""

from edge_askd_runtime.scoring import normalise, repeated_ngram_rate, wer


def test_a_digit_string_scores_the_same_spelled_or_written():
    # TIDIGITS "dhd.2934z": the reference spells the digits, a model trained on IVR prompts writes them.
    assert wer(["two nine three four zero"], ["2 9 3 4 0."]) == 0.0
    assert normalise("5 5") == normalise("Five, five.") == "55"


def test_numbers_that_are_not_single_digit_runs_are_left_alone():
    assert normalise("Press 7 for more options.") == "press 7 for more options"
    assert normalise("room 12 and 3") == "room 12 and 3"
    assert wer(["two nine three four zero"], ["2 9 3 4"]) == 1.0  # one number, misread: one error


def test_repeated_ngram_rate_separates_a_loop_from_a_sentence():
    loop = "he was not an ill disposed young man he was not an ill disposed young man"
    assert repeated_ngram_rate([loop]) > 0.3
    assert repeated_ngram_rate(["he was not an ill disposed young man"]) == 0.0
