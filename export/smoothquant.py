"""SmoothQuant for the ONNX Runtime int8 encoder: per-tensor dynamic int8 at nearly its speed, without its error.

Dynamic int8 (MatMulInteger) quantizes each activation tensor with one scale. Whisper's encoder has a few input
channels up to 30x larger than the rest (measured on base: LayerNorm outputs 8x their median channel, GELU
outputs 32x), so that one scale leaves the other channels a handful of levels: the scheme is the fastest
(base, 10 s: 115 ms against 166 ms weight-only, 2 threads, AMD EPYC) and the least accurate (its cross K/V 16 dB
from fp32 against 24-27 dB weight-only). SmoothQuant (Xiao et al., 2023, arXiv 2211.10438) divides each such
channel by s_j = max|X_j|^a / max|W_j|^(1-a) and multiplies the weight's row j by it: the product is unchanged
in exact arithmetic, and the activations lose their outliers to the weights, which are quantized per channel.

The division is folded into what produces the activation, so the graph gains no operator:
  * q/k/v projections: the self-attention LayerNorm's gamma and beta;
  * fc1: the final LayerNorm's; the cross-attention K/V projections: the encoder's last LayerNorm's;
  * out_proj: v_proj's output rows (attention mixes positions, not channels, so a per-channel scale of V
    reaches out_proj's input unchanged).
fc2's input comes out of GELU, which no scale passes through; `quantize_int8(scheme="mixed")` quantizes those
activations with one scale per row (frame) instead (export/onnx_row_quant.py): what makes GELU's output hard per
tensor is a few loud frames more than its channels.

The maxima come from calibration clips run through the fp32 model: real training recordings, never the sets the
gate or the benchmarks score on (`export/calibration.py`). They only balance the two sides, so a clip louder than
any calibration clip is not clipped: the dynamic quantizer still measures every tensor's range at run time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ALPHA = 0.8  # base, 7 + 26 + 60 real clips, cross K/V SNR vs fp32: 0.5 21-23 dB, 0.7 22-23, 0.85 22-23.4
_EPS = 1e-5
_SCALE_RANGE = (1e-2, 1e2)  # no channel scaled by more than 100x either way


def activation_maxima(model: nn.Module, mels: Iterable[np.ndarray]) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |activation| each smoothed projection sees over `mels` ([1, n_mels, T], the
    runtime's input). Keys: f"{layer}.attn_in" (q/k/v), f"{layer}.attn_out" (out_proj), f"{layer}.ffn_in" (fc1),
    "cross_in" (the decoder's cross-attention K/V projections, run on the encoder's output)."""
    from .graphs import observe_encoder

    maxima: dict[str, torch.Tensor] = {}

    def record(key: str):
        def hook(_module, inputs, _output) -> None:
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            maxima[key] = torch.maximum(maxima[key], x) if key in maxima else x

        return hook

    watched = []
    for index, layer in enumerate(model.model.encoder.layers):
        watched += [
            (layer.self_attn.q_proj, f"{index}.attn_in"),
            (layer.self_attn.out_proj, f"{index}.attn_out"),
            (layer.fc1, f"{index}.ffn_in"),
        ]
    watched += [(layer.encoder_attn.k_proj, "cross_in") for layer in model.model.decoder.layers]
    observe_encoder(model, [(module, record(key)) for module, key in watched], mels)
    if not maxima:
        raise ValueError("SmoothQuant calibration got no clips")
    return maxima


def _scales(activation: torch.Tensor, consumers: list[nn.Linear], alpha: float) -> torch.Tensor:
    weight = torch.stack([linear.weight.detach().abs().amax(0) for linear in consumers]).amax(0)
    scales = activation.clamp(min=_EPS) ** alpha / weight.clamp(min=_EPS) ** (1 - alpha)
    return scales.clamp(*_SCALE_RANGE)


def _fold_into_norm(norm: nn.LayerNorm, consumers: list[nn.Linear], scales: torch.Tensor) -> None:
    norm.weight.div_(scales)
    norm.bias.div_(scales)
    for linear in consumers:
        linear.weight.mul_(scales[None, :])


def smoothed_copy(model: nn.Module, maxima: dict[str, torch.Tensor], alpha: float = ALPHA) -> nn.Module:
    """A copy of `model` for the encoder export: the same cross K/V in exact arithmetic (its encoder's hidden
    states are scaled per channel, which the cross projections undo), with the activation outliers of `maxima`
    moved into the weights. `model` is left as it was."""
    smoothed = copy.deepcopy(model)
    with torch.no_grad():
        for index, layer in enumerate(smoothed.model.encoder.layers):
            attn = layer.self_attn
            qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
            _fold_into_norm(layer.self_attn_layer_norm, qkv, _scales(maxima[f"{index}.attn_in"], qkv, alpha))
            scales = _scales(maxima[f"{index}.attn_out"], [attn.out_proj], alpha)
            attn.v_proj.weight.div_(scales[:, None])
            attn.v_proj.bias.div_(scales)
            attn.out_proj.weight.mul_(scales[None, :])
            ffn_scales = _scales(maxima[f"{index}.ffn_in"], [layer.fc1], alpha)
            _fold_into_norm(layer.final_layer_norm, [layer.fc1], ffn_scales)
        decoder_layers = smoothed.model.decoder.layers
        cross = [p for layer in decoder_layers for p in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
        _fold_into_norm(smoothed.model.encoder.layer_norm, cross, _scales(maxima["cross_in"], cross, alpha))
    return smoothed


def export_smoothquant_encoder(
    model: nn.Module,
    dst: Path,
    mels: Iterable[np.ndarray] | None = None,
    maxima: dict[str, torch.Tensor] | None = None,
    quantize_convs: bool = False,
) -> dict[str, torch.Tensor]:
    """The smoothquant int8 encoder of `model` at `dst`: calibrated on `mels` (or reusing `maxima` from an earlier
    call), smoothed, exported and quantized "mixed"; the smoothed fp32 file is not kept. Returns the maxima."""
    from . import onnx_export

    if maxima is None:
        maxima = activation_maxima(model, mels if mels is not None else [])
    smoothed = dst.with_name(f".{dst.stem}.smoothed.fp32.onnx")
    try:
        onnx_export.export_encoder(smoothed_copy(model, maxima), smoothed)
        onnx_export.quantize_int8(smoothed, dst, quantize_convs, "mixed")
    finally:
        smoothed.unlink(missing_ok=True)
    return maxima
