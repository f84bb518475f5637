"""The shared greedy policy's guards and the torch-free detokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from edge_askd_runtime.decoding import DecodeSettings, SilenceGate, greedy_step, repetition_start, token_cap
from edge_askd_runtime.errors import ModelError
from edge_askd_runtime.tokenizer import TABLE, Detokenizer


def test_repetition_detector_keeps_one_copy():
    assert repetition_start([5, 1, 2, 1, 2, 1, 2, 1, 2], max_repeats=4, max_period=16) == 3
    assert repetition_start([7, 7, 7, 7], max_repeats=4, max_period=16) == 1
    assert repetition_start([1, 2, 3, 1, 2, 3, 1, 2], max_repeats=4, max_period=16) is None


def test_greedy_step_applies_suppression_eos_and_cap():
    settings = DecodeSettings(prompt=(50257, 50362), eos=50256, suppress_tokens=(3,), begin_suppress_tokens=(220,))
    logits = np.zeros(51864, dtype=np.float32)
    logits[220] = 5.0
    logits[3] = 4.0
    logits[11] = 3.0
    generated: list[int] = []
    assert greedy_step(logits, generated, settings, cap=2) is None
    assert generated == [11]  # 220 suppressed at the first step, 3 always
    assert greedy_step(logits, generated, settings, cap=2) == "token_cap"
    assert generated == [11, 220]
    logits[50256] = 9.0
    assert greedy_step(logits, generated, settings, cap=10) == "eos"
    assert token_cap(settings, 1.0) == 16 and token_cap(settings, 100.0) == 446


def test_silence_gate_on_real_speech_and_silence(real_clip):
    from edge_askd_runtime import load_audio

    gate = SilenceGate()
    speech = load_audio(real_clip("arctic_a0009"))
    assert not gate.is_silent(speech)
    assert gate.is_silent(np.zeros(16000, dtype=np.float32))
    assert gate.is_silent(speech * 1e-4)  # -80 dB: room noise, not speech


def test_detokenizer_equals_hf_tokenizer(teacher_dir):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    for name in ("tiny.en", "base"):
        path = teacher_dir(name)
        hf = AutoTokenizer.from_pretrained(path)
        text = "And so, my fellow Americans: ask not — naïve café, 3.5% «quoted» 東京."
        ids = hf.encode(text, add_special_tokens=False)
        ours = Detokenizer.from_file(path / "tokenizer.json", first_special=hf.convert_tokens_to_ids("<|endoftext|>"))
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True)
        assert ours.decode([50257, *ids, 50256]) == hf.decode(ids, skip_special_tokens=True)
        # Every token alone (byte fragments included: both replace a broken UTF-8 sequence the same way).
        fast = Tokenizer.from_file(str(path / "tokenizer.json"))
        every = [[i] for i in range(ours.first_special)]
        assert [ours.decode(i) for i in every] == fast.decode_batch(every, skip_special_tokens=True)


def test_detokenizer_table_decodes_as_tokenizer_json_and_refuses_a_broken_one(teacher_dir, tmp_path):
    """An export's detokenizer.bin holds the same bytes per token as tokenizer.json's vocabulary."""
    path = teacher_dir("base") / "tokenizer.json"
    parsed = Detokenizer.from_file(path, first_special=50257)
    parsed.write_table(tmp_path / TABLE)
    table = Detokenizer.from_table(tmp_path / TABLE)
    assert table.first_special == 50257
    assert all(table.piece(i) == parsed.piece(i) for i in range(50257 + 10))
    assert table.decode([50258, 2425, 11, 1002, 50256]) == parsed.decode([2425, 11, 1002]) == " Hello, world"

    data = (tmp_path / TABLE).read_bytes()
    for name, broken in {"truncated.bin": data[:-3], "odd.bin": data[:1001], "other.bin": b"PK" + data[2:]}.items():
        (tmp_path / name).write_bytes(broken)
        with pytest.raises(ModelError) as info:
            Detokenizer.from_table(tmp_path / name)
        message = str(info.value)
        assert message.startswith(str(tmp_path / name)) and "re-run edge-askd export" in message and "\n" not in message


def test_detokenizer_reads_only_the_vocabulary_and_keeps_a_few_mb(teacher_dir, tmp_path):
    """A board pays for the detokenizer in resident memory: the parsed tokenizer.json (merges, a str -> id dict)
    cost 30 MB at load and kept 21 MB; the token bytes alone are ~2 MB. Measured in a fresh process."""
    import subprocess
    import sys

    path = teacher_dir("base") / "tokenizer.json"
    probe = (
        "import numpy\n"
        "from edge_askd_bench.memory import current_rss_mb, peak_rss_mb\n"
        "from edge_askd_runtime.tokenizer import Detokenizer\n"
        "before = peak_rss_mb()\n"
        f"d = Detokenizer.from_file({str(path)!r}, first_special=50257)\n"
        "print(peak_rss_mb() - before, current_rss_mb() - before, d.decode([2425, 11]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    peak_mb, kept_mb, text = float(out[0]), float(out[1]), " ".join(out[2:])
    assert text == "Hello,"
    assert peak_mb < 12 and kept_mb < 8, (peak_mb, kept_mb)

    # The vocab object is read up to the "merges" key, not to a token spelled "merges"; escapes are decoded.
    tricky = tmp_path / "tricky.json"
    tricky.write_text('{"model": {"vocab": {"a": 0, "merges": 1, "\\"}": 2, "b": 3}, "merges": ["a b"]}}')
    assert Detokenizer.from_file(tricky, first_special=4).decode([0, 1, 2, 3]) == 'amerges"}b'

    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {"type": "BPE", "merges": []}}')
    with pytest.raises(ModelError, match="tokenizer.json.*re-run edge-askd export"):
        Detokenizer.from_file(broken, first_special=50257)
