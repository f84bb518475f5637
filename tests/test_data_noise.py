"""The real-noise bank (pinned Debian / PyPI archives), augmentation with it, and augmentation in distillation."""

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from edge_askd.data import augment as A
from edge_askd.data.manifest import ValidationConfig, validate_manifest
from edge_askd.data.noise_bank import CATEGORIES, build_noise_bank, cut_pieces, noise_minutes
from edge_askd.distill.config import DistillConfig
from edge_askd.distill.dataset import Clip, ClipAugment, DistillDataset, TargetBuilder
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.features import log_mel


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return build_noise_bank(tmp_path_factory.mktemp("noise"))


@pytest.fixture(scope="module")
def speech(real_clip):
    return load_audio(real_clip("arctic_a0009"))


def _db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


def test_noise_bank_contents_and_byte_identical_rebuild(bank, tmp_path):
    entries = validate_manifest(bank, ValidationConfig(allow_empty_text=True, duration_tolerance=0.01))
    minutes = noise_minutes(bank)
    # 5 music-on-hold tracks, 18 desktop effects, alsa's test noise, silero-vad's speech + the channel-name voice.
    assert 18.0 < minutes["music"] < 18.6 and 0.3 < minutes["effects"] < 0.45
    assert 0.02 < minutes["noise"] < 0.03 and 3.9 < minutes["babble"] < 4.1
    assert {e.extra["category"] for e in entries} == set(CATEGORIES) and all(e.text == "" for e in entries)
    for e in entries:
        audio, rate = sf.read(str(e.audio_path(bank)), dtype="float32")
        assert rate == 16000 and audio.ndim == 1 and len(audio) <= 160000
        assert _db(audio) > -50  # silent pieces (a track's fade-out) are dropped
    again = build_noise_bank(tmp_path / "again")
    assert again.read_bytes() == bank.read_bytes()
    for e in entries[::20]:
        assert e.audio_path(again).read_bytes() == e.audio_path(bank).read_bytes()


def test_cut_pieces_are_equal_and_bounded():
    pieces = cut_pieces(np.zeros(16000 * 25, np.float32), 10.0)
    assert [len(p) for _, p in pieces] == [133333, 133334, 133333] and [s for s, _ in pieces] == [0, 133333, 266667]
    assert len(cut_pieces(np.zeros(100, np.float32), 10.0)) == 1


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("category", ["music", "babble", "noise"])
def test_real_noise_at_requested_snr_and_deterministic(bank, speech, snr, category):
    noise = A.load_noise_bank(bank.parent, (category,))[0]
    noisy = A.add_noise(speech, noise, snr, np.random.default_rng(4))
    assert noisy.shape == speech.shape
    assert _db(speech) - _db(noisy - speech) == pytest.approx(snr, abs=0.5)
    assert np.array_equal(noisy, A.add_noise(speech, noise, snr, np.random.default_rng(4)))
    assert not np.array_equal(noisy, A.add_noise(speech, noise, snr, np.random.default_rng(5)))


def test_real_noise_probability_is_a_config_field(bank, speech):
    music = A.load_noise_bank(bank, ("music",))  # the manifest path works as well as the folder
    only_noise = dict(p_noise=1.0, p_reverb=0.0, p_speed=0.0, p_telephone=0.0, gain_db=(0.0, 0.0), snr_db=(5.0, 5.0))

    def high_band_fraction(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        return spec[f > 4100].sum() / spec.sum()

    # The music-on-hold recordings are 8 kHz: noise drawn from them has nothing above 4 kHz, coloured noise has.
    real = A.augment(speech, np.random.default_rng(0), A.AugmentConfig(p_real_noise=1.0, **only_noise), music)
    coloured = A.augment(speech, np.random.default_rng(0), A.AugmentConfig(p_real_noise=0.0, **only_noise), music)
    assert high_band_fraction(real - speech) < 1e-4 < high_band_fraction(coloured - speech)


def test_missing_noise_bank_is_one_line_error(tmp_path):
    with pytest.raises(EdgeAskdError, match=r"noise.jsonl: noise bank not found; build it with `edge-askd data noise"):
        A.load_noise_bank(tmp_path)


# --- augmentation in distillation -------------------------------------------------------------------------------


def _dataset(real_clip, augment=None):
    tokenizer = lambda text, add_special_tokens: SimpleNamespace(input_ids=[7, 8, 9])  # noqa: E731
    clips = [Clip(real_clip(n), "text", 3.0) for n in ("arctic_a0009", "arctic_a0007")]
    return DistillDataset(clips, TargetBuilder(tokenizer, [1, 2, 3], 0, 448), augment=augment)


def test_distill_augmentation_deterministic_by_seed_epoch_clip(bank, real_clip):
    cfg = DistillConfig(augment=True, augment_noise_dir=str(bank.parent), augment_p_reverb=0.0, seed=3)
    aug = ClipAugment.from_config(cfg)
    assert len(aug.noises) > 100 and aug.config.p_real_noise == 0.5 and aug.config.p_reverb == 0.0
    on, off = _dataset(real_clip, aug), _dataset(real_clip)
    clean = log_mel(load_audio(real_clip("arctic_a0009")), pad_to_30s=False)

    def mel(ds, epoch, index=0):
        return ds.example(index, epoch)["student_mel"].numpy()

    # Off (no augmenter, or no epoch: dev, probes, the teacher cache) gives the original features.
    assert np.array_equal(mel(off, 4), clean) and np.array_equal(on[0]["student_mel"].numpy(), clean)
    # On: different from the clean clip, and a pure function of (seed, epoch, clip index) -- a fresh dataset (a
    # resumed run) reproduces it in any order, another epoch or seed draws another augmentation.
    first = mel(on, 0)
    assert not np.array_equal(first, clean)
    again = _dataset(real_clip, ClipAugment.from_config(cfg))
    mel(again, 1, index=1)
    assert np.array_equal(mel(again, 0), first)
    assert not np.array_equal(mel(on, 1), first)
    other_seed = ClipAugment.from_config(DistillConfig(**{**cfg.to_dict(), "seed": 4}))
    assert not np.array_equal(mel(_dataset(real_clip, other_seed), 0), first)
    # The teacher hears the same augmented audio (frames away from the end match the student's unpadded mel).
    item = on.example(0, 0)
    n = item["student_mel"].shape[1] - 2
    assert np.allclose(item["teacher_mel"][:, :n].numpy(), item["student_mel"][:, :n].numpy(), atol=1e-5)
    assert np.array_equal(on.audio(0), load_audio(real_clip("arctic_a0009")))  # the cached clean audio is untouched


def test_distill_augmentation_off_by_default_and_p_zero(real_clip):
    assert ClipAugment.from_config(DistillConfig()) is None
    never = ClipAugment(0, 0.0, A.AugmentConfig())
    assert np.array_equal(
        _dataset(real_clip, never).example(1, 2)["student_mel"], _dataset(real_clip)[1]["student_mel"]
    )
    with pytest.raises(EdgeAskdError, match="augment_p 1.5 must be within"):
        ClipAugment(0, 1.5, A.AugmentConfig())
