"""Augmentations: each one measured for the effect it claims, and reproducible by seed."""

import numpy as np
import pytest

from edge_askd.data import augment as A
from edge_askd_runtime.audio import load_audio


@pytest.fixture(scope="module")
def speech(real_clip):
    return load_audio(real_clip("arctic_a0009"))


def _db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_noise_at_requested_snr(speech, snr, exponent):
    rng = np.random.default_rng(1)
    noise = A.coloured_noise(len(speech) // 3, rng, exponent)  # shorter than the speech: must loop
    noisy = A.add_noise(speech, noise, snr, np.random.default_rng(2))
    assert noisy.shape == speech.shape
    assert _db(speech) - _db(noisy - speech) == pytest.approx(snr, abs=0.3)


def test_coloured_noise_spectral_slope():
    rng = np.random.default_rng(0)
    for exponent, lo_minus_hi in [(0.0, (-2, 2)), (2.0, (25, 60))]:
        spec = np.abs(np.fft.rfft(A.coloured_noise(160000, rng, exponent))) ** 2
        f = np.fft.rfftfreq(160000, 1 / 16000)
        diff = 10 * np.log10(spec[(f > 100) & (f < 200)].mean() / spec[(f > 4000) & (f < 8000)].mean())
        assert lo_minus_hi[0] < diff < lo_minus_hi[1]


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_by_factor(speech, factor):
    out = A.speed(speech, factor)
    assert len(out) / len(speech) == pytest.approx(1 / factor, rel=0.01)


def test_telephone_removes_energy_above_4khz(speech):
    def high_band_fraction(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        return spec[f > 4100].sum() / spec.sum()

    out = A.telephone(speech)
    assert out.shape == speech.shape
    assert high_band_fraction(speech) > 1e-3 and high_band_fraction(out) < 1e-5


def test_gain_in_db_and_clipping(speech):
    assert _db(A.gain(speech, -6.0)) - _db(speech) == pytest.approx(-6.0, abs=0.01)
    assert np.max(np.abs(A.gain(speech, 40.0))) <= 1.0


def test_reverb_adds_a_decaying_tail_that_grows_with_rt60():
    click = np.zeros(16000, np.float32)
    click[100] = 1.0

    def tail_energy(rt60, after_ms):
        cfg = A.RoomConfig(rt60=(rt60, rt60))
        out, drawn = A.reverb(click, np.random.default_rng(3), cfg)
        assert drawn == rt60 and out.shape == click.shape
        start = 100 + after_ms * 16
        return np.sum(out[start:] ** 2) / np.sum(out**2)  # share of energy later than the direct sound

    # A dry click has no energy after itself; a room spreads it out, and more so the longer its RT60.
    assert tail_energy(0.2, 5) > 0.1
    assert tail_energy(0.9, 50) > 10 * tail_energy(0.2, 50)


def test_spec_augment_masks_bands_and_frames():
    mel = np.random.default_rng(0).standard_normal((80, 1000)).astype(np.float32)
    out = A.spec_augment(mel, np.random.default_rng(5), freq_masks=2, freq_width=10, time_masks=2)
    masked = out == np.float32(mel.mean())
    assert 0 < masked.sum() < mel.size / 2
    assert np.any(masked.all(axis=1)) and np.any(masked.all(axis=0))  # whole mel rows and whole frames
    assert np.array_equal(out[~masked], mel[~masked]) and not np.shares_memory(out, mel)


def test_augment_chain_is_reproducible_and_pure(speech):
    before = speech.copy()
    a = A.augment(speech, np.random.default_rng(7))
    b = A.augment(speech, np.random.default_rng(7))
    c = A.augment(speech, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(speech, before)
