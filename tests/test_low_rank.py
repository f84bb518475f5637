"""The LiteASR-style low-rank encoder of the encoder-schemes bench (benchmarks/low_rank.py), on real weights and
real speech: the factored encoder stays near the original on a clip it was not calibrated on, closer the more
variance it keeps, and a layer is factored only where its two factors are smaller than its weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_askd_bench.low_rank import encoder_linears, factored_encoder, low_rank_encoder, output_statistics, summary
from edge_askd_export.graphs import EncoderGraph, load_model
from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.transcriber import model_mel


def _mel(path) -> np.ndarray:
    return model_mel(load_audio(path), padded_30s=False, n_mels=80, buckets=[], tail_frames=50)


def _snr_db(model, reference: list[torch.Tensor], mel: np.ndarray) -> float:
    with torch.no_grad():
        outputs = EncoderGraph(model).eval()(torch.from_numpy(mel))
    signal = sum(float((r**2).sum()) for r in reference)
    noise = sum(float(((r - o) ** 2).sum()) for r, o in zip(reference, outputs, strict=True))
    return 10 * np.log10(signal / noise)


def test_low_rank_encoder_stays_near_the_original_and_shrinks_with_the_variance(teacher_dir, real_clip):
    model = load_model(teacher_dir("tiny.en"))
    calibration = [_mel(real_clip(name)) for name in ("jfk", "arctic_a0007", "librivox_0870", "librivox_0880")]
    held_out = _mel(real_clip("librivox_0890"))
    with torch.no_grad():
        reference = EncoderGraph(model).eval()(torch.from_numpy(held_out))

    loose, loose_ranks = low_rank_encoder(model, calibration, variance=0.95)
    stats = output_statistics(model, calibration)
    tight, tight_ranks = factored_encoder(model, stats, variance=0.9995)
    assert all(isinstance(linear, torch.nn.Linear) for linear in encoder_linears(model).values())  # a copy
    for ranks in (loose_ranks, tight_ranks):
        assert len(ranks) == 6 * len(model.model.encoder.layers)
        assert all(r.weights < r.d_in * r.d_out for r in ranks if r.factored)
        assert all(r.rank == r.d_out for r in ranks if not r.factored)
    assert summary(loose_ranks)["weights_kept"] < summary(tight_ranks)["weights_kept"] <= 1.0
    assert summary(loose_ranks)["factored_layers"] > 0
    assert all(a.rank <= b.rank for a, b in zip(loose_ranks, tight_ranks, strict=True))

    loose_snr, tight_snr = _snr_db(loose, reference, held_out), _snr_db(tight, reference, held_out)
    assert tight_snr > loose_snr + 3 and tight_snr > 10, (loose_snr, tight_snr)

    _, whole = factored_encoder(model, stats, variance=1.0)  # every component: no layer gets smaller
    assert not any(r.factored for r in whole)
    with pytest.raises(ValueError, match="fraction"):
        factored_encoder(model, stats, variance=1.5)
