"""LiteASR-style low-rank encoder (arXiv 2502.20583): each linear layer's output activations, recorded on
calibration audio, are projected on their principal components, which turns the layer into two thinner ones.

For a layer y = W x + b whose outputs have mean m and principal directions V_k (the top-k eigenvectors of their
covariance), y ~= m + V_k V_k^T (y - m): two thinner layers, h = (V_k^T W) x with k outputs, then
y = V_k h + (m + V_k V_k^T (b - m)). No training; k per layer is the smallest that keeps `variance` of the
outputs' variance, and a layer is left whole when its two factors would not be smaller than W
(k (d_in + d_out) >= d_in d_out).

Built here for the encoder-schemes bench (`--schemes low-rank`), the issue's point 5: tried, see
docs/encoder-int8 for the measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerRank:
    name: str  # e.g. "3.fc1"
    d_in: int
    d_out: int
    rank: int  # components kept (d_out when the layer stays whole)
    factored: bool

    @property
    def weights(self) -> int:
        return self.rank * (self.d_in + self.d_out) if self.factored else self.d_in * self.d_out


def encoder_linears(model) -> dict[str, object]:
    """{"layer.name": nn.Linear} for every projection of the encoder's layers (attention q/k/v/out, fc1, fc2)."""
    linears = {}
    for index, layer in enumerate(model.model.encoder.layers):
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linears[f"{index}.{name}"] = getattr(layer.self_attn, name)
        linears[f"{index}.fc1"], linears[f"{index}.fc2"] = layer.fc1, layer.fc2
    return linears


def output_statistics(model, mels: Iterable[np.ndarray]) -> dict[str, tuple]:
    """{layer: (mean [d_out], covariance [d_out, d_out])} of each encoder linear's outputs over every frame of
    `mels` ([1, n_mels, T], the runtime's input), accumulated in float64."""
    import torch

    from edge_askd_export.graphs import observe_encoder

    sums: dict[str, list] = {}

    def record(key: str):
        def hook(_module, _inputs, output) -> None:
            y = output.detach().reshape(-1, output.shape[-1]).double()
            if key not in sums:
                sums[key] = [0, torch.zeros(y.shape[1], dtype=torch.float64), torch.zeros((y.shape[1],) * 2).double()]
            sums[key][0] += y.shape[0]
            sums[key][1] += y.sum(0)
            sums[key][2] += y.T @ y

        return hook

    observe_encoder(model, [(module, record(key)) for key, module in encoder_linears(model).items()], mels)
    if not sums:
        raise ValueError("low-rank calibration got no clips")
    stats = {}
    for key, (count, total, outer) in sums.items():
        mean = total / count
        stats[key] = (mean, outer / count - torch.outer(mean, mean))
    return stats


def low_rank_encoder(model, mels: Iterable[np.ndarray], variance: float = 0.99) -> tuple[object, list[LayerRank]]:
    """A copy of `model` whose encoder linears are factored where that makes them smaller, and each layer's rank,
    calibrated on `mels`."""
    return factored_encoder(model, output_statistics(model, mels), variance)


def factored_encoder(model, stats: dict[str, tuple], variance: float) -> tuple[object, list[LayerRank]]:
    """low_rank_encoder from `output_statistics` already gathered (several variances, one calibration pass)."""
    import torch
    from torch import nn

    if not 0 < variance <= 1:
        raise ValueError(f"variance {variance}: give a fraction in (0, 1]")
    result = copy.deepcopy(model).eval()
    ranks = []
    for key, linear in encoder_linears(result).items():
        mean, covariance = stats[key]
        values, vectors = torch.linalg.eigh(covariance)  # ascending
        values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
        kept = torch.cumsum(values, 0) / values.sum().clamp(min=1e-30)
        rank = int(torch.searchsorted(kept, torch.tensor(variance, dtype=kept.dtype)).item()) + 1
        rank = min(rank, linear.out_features)
        d_in, d_out = linear.in_features, linear.out_features
        factored = rank * (d_in + d_out) < d_in * d_out
        ranks.append(LayerRank(key, d_in, d_out, rank if factored else d_out, factored))
        if not factored:
            continue
        basis = vectors[:, :rank]  # [d_out, k]
        weight = linear.weight.detach().double()
        bias = linear.bias.detach().double() if linear.bias is not None else torch.zeros(d_out, dtype=torch.float64)
        down = nn.Linear(d_in, rank, bias=False)
        down.weight.data = (basis.T @ weight).float()  # [k, d_in]
        up = nn.Linear(rank, d_out, bias=True)
        up.weight.data = basis.float()  # [d_out, k]
        up.bias.data = (mean + basis @ (basis.T @ (bias - mean))).float()
        _replace(result, linear, nn.Sequential(down, up))
    return result, ranks


def _replace(model, old, new) -> None:
    for module in model.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)
                return
    raise ValueError("linear layer not found in the model")


def summary(ranks: list[LayerRank]) -> dict:
    """Weights kept overall and the ranks per kind of layer, for the bench's record."""
    full = sum(r.d_in * r.d_out for r in ranks)
    by_kind: dict[str, list[int]] = {}
    for r in ranks:
        by_kind.setdefault(r.name.split(".", 1)[1], []).append(r.rank)
    return {
        "weights_kept": round(sum(r.weights for r in ranks) / full, 3),
        "factored_layers": sum(r.factored for r in ranks),
        "layers": len(ranks),
        "ranks": by_kind,
    }
