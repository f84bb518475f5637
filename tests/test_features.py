import numpy as np
import pytest

from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.features import N_FRAMES_30S, log_mel, mel_filters


@pytest.fixture(scope="module")
def hf_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=30)


def test_mel_filters_equal_transformers(hf_extractor):
    np.testing.assert_allclose(mel_filters(), hf_extractor.mel_filters, atol=1e-7)


@pytest.mark.parametrize("clip", ["jfk", "arctic_a0007"])
def test_log_mel_padded_equals_transformers_on_real_speech(real_clip, hf_extractor, clip):
    audio = load_audio(real_clip(clip))
    ours = log_mel(audio, pad_to_30s=True)
    ref = hf_extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    assert ours.shape == ref.shape == (80, N_FRAMES_30S)
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("seconds", [0.5, 3.7, 10.0, 31.0])
def test_log_mel_unpadded_equals_transformers_longest(hf_extractor, seconds):
    rng = np.random.default_rng(int(seconds * 10))
    audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    ours = log_mel(audio, pad_to_30s=False)
    ref = hf_extractor(
        audio, sampling_rate=16000, return_tensors="np", padding="longest", truncation=False
    ).input_features[0]
    assert ours.shape == ref.shape == (80, len(audio) // 160)
    assert np.abs(ours - ref).max() <= 1e-4


def test_unpadded_frames_match_padded_except_the_edge(real_clip):
    audio = load_audio(real_clip("arctic_a0007"))
    padded = log_mel(audio, pad_to_30s=True)
    unpadded = log_mel(audio, pad_to_30s=False)
    n = unpadded.shape[1]
    assert n == len(audio) // 160
    # Identical but for the last frames, where the unpadded STFT reflects instead of seeing zeros.
    np.testing.assert_allclose(unpadded[:, : n - 2], padded[:, : n - 2], atol=1e-5)


def test_log_mel_rejects_multichannel():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 16000), dtype=np.float32))


@pytest.mark.parametrize("n_mels", [80, 128])
def test_the_band_sum_is_the_filterbank_product(n_mels):
    """The mel projection sums each filter's band instead of calling BLAS (whose threads would spin on the
    encoder's cores): the same numbers as the matrix product, for Whisper's 80- and 128-band front ends."""
    from edge_askd_runtime.features import _apply_mel

    power = np.random.default_rng(0).random((777, 201), dtype=np.float32) ** 4 * 100
    expected = power @ mel_filters(n_mels)
    got = _apply_mel(power, n_mels)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))
