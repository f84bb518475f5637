"""Export graphs: an encoder that emits cross-attention K/V and a decoder step with a fixed-size KV cache.

One graph design serves ONNX, OpenVINO and TFLite alike (see shared/notes/export-toolchain.md, section 3):
  * `EncoderGraph`: mel[1, n_mels, T] -> cross_k{l}, cross_v{l} [1, H, S, Dh] per decoder layer, S = ceil(T/2).
    The decoder's cross-attention projections are done once here instead of once per token.
  * `DecoderStepGraph`: T tokens per call (T = 1 while generating; the whole prompt in the first call) and a
    self-attention cache of S slots per layer, [1, H, S, Dh]. Valid slots are `arange(S) < offset`; the new
    tokens attend to each other causally through their own K/V, returned as new_k{l}/new_v{l} [1, H, T, Dh],
    which the numpy runtime writes into its fixed 448-slot cache at `offset`. Logits come for the last token
    only. ONNX/OpenVINO keep T and S dynamic, so the runtime passes only the filled slots (S = offset): a step
    then reads and concatenates a few KB of cache instead of all 448 slots (11 MB for base). TFLite traces
    T = 1, S = 448 (static shapes) and masks the stale slots. No HF cache classes, no data-dependent control flow.
    With `cache_in_graph` (the ONNX GPU variant) the graph takes all 448 slots and returns the whole updated
    cache (`out_k{l}`/`out_v{l}`) instead, so a runtime can keep the cache on its device across steps.
  * Per-layer tensors rather than one stacked [L, ...] tensor: stacked, ONNX Runtime spent ~40% of each step
    in Split copying the whole cross cache.
The attention arithmetic is written out from the HF layer weights (same order of operations as HF's
WhisperAttention: q is scaled before the matmul, its scale folded into the q projection) so the graph is
independent of HF's attention dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_askd.distill.length_aware import encode

# Large negative rather than -inf: the current token is always attended, so no row is fully masked, and a finite
# value keeps fp16 exports free of inf arithmetic.
_MASKED = -1e4


@dataclass(frozen=True)
class GraphDims:
    """Shapes of the exported graphs, read from a HF WhisperConfig."""

    n_mels: int
    d_model: int
    decoder_layers: int
    heads: int
    head_dim: int
    vocab_size: int
    max_target_positions: int  # size of the fixed self-attention cache
    max_source_positions: int  # encoder frames after the stride-2 conv (1500 = 30 s)

    @classmethod
    def from_config(cls, config) -> GraphDims:
        return cls(
            n_mels=config.num_mel_bins,
            d_model=config.d_model,
            decoder_layers=config.decoder_layers,
            heads=config.decoder_attention_heads,
            head_dim=config.d_model // config.decoder_attention_heads,
            vocab_size=config.vocab_size,
            max_target_positions=config.max_target_positions,
            max_source_positions=config.max_source_positions,
        )

    @property
    def max_mel_frames(self) -> int:
        return 2 * self.max_source_positions

    def encoder_input_names(self) -> list[str]:
        return ["mel"]

    def encoder_output_names(self) -> list[str]:
        return [f"cross_{kv}{layer}" for layer in range(self.decoder_layers) for kv in ("k", "v")]

    def decoder_input_names(self) -> list[str]:
        names = ["token", "offset"]
        names += [f"self_{kv}{layer}" for layer in range(self.decoder_layers) for kv in ("k", "v")]
        return names + self.encoder_output_names()

    def decoder_output_names(self, cache_in_graph: bool = False) -> list[str]:
        prefix = "out_" if cache_in_graph else "new_"
        return ["logits"] + [f"{prefix}{kv}{layer}" for layer in range(self.decoder_layers) for kv in ("k", "v")]


def write_slots(cache: torch.Tensor, new: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """`cache` [..., S, D] with slots offset..offset+T replaced by `new` [..., T, D] (slot axis -2): a scatter, so
    no shape depends on the value of `offset`."""
    steps = offset.reshape(-1)[:1] + torch.arange(new.shape[-2], device=new.device)
    index = steps.reshape(*([1] * (new.dim() - 2)), -1, 1).expand(new.shape)
    return cache.scatter(new.dim() - 2, index, new)


def _scaled_linear(linear: nn.Linear, scale: float) -> nn.Linear:
    """A copy of `linear` whose output is `scale` times the original's (the original is left as it is)."""
    scaled = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    scaled.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        scaled.weight.copy_(linear.weight * scale)
        if linear.bias is not None:
            scaled.bias.copy_(linear.bias * scale)
    return scaled.requires_grad_(False)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[1, L, D] -> [1, H, L, Dh]."""
    batch, length, dim = x.shape
    return x.reshape(batch, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[1, H, L, Dh] -> [1, L, D]."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class EncoderGraph(nn.Module):
    """mel [1, n_mels, T] -> (cross_k0, cross_v0, cross_k1, ...), each [1, H, ceil(T/2), Dh]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.model.encoder
        self.cross = nn.ModuleList(layer.encoder_attn for layer in model.model.decoder.layers)
        self.heads = model.config.decoder_attention_heads

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = encode(self.encoder, mel).hidden  # unpadded single sample: traceable path
        outputs: list[torch.Tensor] = []
        for attn in self.cross:
            outputs.append(_heads(attn.k_proj(hidden), self.heads))
            outputs.append(_heads(attn.v_proj(hidden), self.heads))
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One greedy step: (token, offset, self K/V caches, cross K/V) -> (logits, new self K/V for this token), or
    with `cache_in_graph` (logits, the self K/V caches with this call's tokens written at `offset`)."""

    def __init__(self, model: nn.Module, cache_in_graph: bool = False, every_position: bool = False) -> None:
        """every_position: logits for each of the T tokens ([1, T, V]), so one call can check a drafted continuation
        (decoding.greedy_decode's `draft`); else only the last token's ([1, 1, V])."""
        super().__init__()
        self.cache_in_graph = cache_in_graph
        self.every_position = every_position
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.heads = model.config.decoder_attention_heads
        self.layers = len(self.decoder.layers)
        # HF scales q after its projection; scaled copies of the q projections save one Mul node per attention
        # per step. The scale, head_dim ** -0.5, is 1/8 for every Whisper size: a power of two, so exact.
        self.self_q = nn.ModuleList(
            _scaled_linear(layer.self_attn.q_proj, layer.self_attn.scaling) for layer in self.decoder.layers
        )
        self.cross_q = nn.ModuleList(
            _scaled_linear(layer.encoder_attn.q_proj, layer.encoder_attn.scaling) for layer in self.decoder.layers
        )

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(2, 3))
        if bias is not None:
            scores = scores + bias
        return torch.matmul(torch.softmax(scores, dim=-1), v)

    def forward(self, token: torch.Tensor, offset: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.layers
        self_kv = caches[: 2 * n]
        cross_kv = caches[2 * n :]
        steps = torch.arange(token.shape[1], device=token.device)  # the T new tokens
        position = torch.index_select(self.decoder.embed_positions.weight, 0, offset + steps)  # [T, D]
        x = self.decoder.embed_tokens(token) + position[None, :, :]
        # Cache slots at or beyond `offset` are stale; the new tokens are attended through their own K/V below,
        # each to itself and the new tokens before it (an explicit causal mask, not SDPA's is_causal).
        slots = torch.arange(self_kv[0].shape[2], device=token.device)
        valid = slots[None, :] < offset[:, None]  # [1, S]
        cache_bias = torch.where(valid, 0.0, _MASKED).to(x.dtype)[:, None, None, :].expand(-1, -1, steps.shape[0], -1)
        causal = torch.where(steps[None, :] <= steps[:, None], 0.0, _MASKED).to(x.dtype)[None, None]  # [1, 1, T, T]
        bias = torch.cat([cache_bias, causal], dim=-1)
        new_kv: list[torch.Tensor] = []
        for index, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = _heads(self.self_q[index](h), self.heads)
            k_new = _heads(attn.k_proj(h), self.heads)
            v_new = _heads(attn.v_proj(h), self.heads)
            k_all = torch.cat([self_kv[2 * index], k_new], dim=2)
            v_all = torch.cat([self_kv[2 * index + 1], v_new], dim=2)
            x = x + attn.out_proj(_merge_heads(self._attend(q, k_all, v_all, bias)))
            new_kv += [k_new, v_new]

            cross = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = _heads(self.cross_q[index](h), self.heads)
            x = x + cross.out_proj(_merge_heads(self._attend(q, cross_kv[2 * index], cross_kv[2 * index + 1], None)))

            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        logits = self.proj_out(self.decoder.layer_norm(x if self.every_position else x[:, -1:, :]))
        if self.cache_in_graph:
            return (logits, *(write_slots(cache, new, offset) for cache, new in zip(self_kv, new_kv, strict=True)))
        return (logits, *new_kv)


def example_inputs(
    dims: GraphDims, frames: int = 3000, tokens: int = 1
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Example (encoder_args, decoder_args) for tracing; zeros except plausible tokens and offset. A dynamic
    token axis needs `tokens` >= 2: torch.export specialises a size-1 example to a constant."""
    mel = torch.zeros(1, dims.n_mels, frames)
    steps = (frames + 1) // 2
    cross = [torch.zeros(1, dims.heads, steps, dims.head_dim) for _ in range(2 * dims.decoder_layers)]
    cache = [
        torch.zeros(1, dims.heads, dims.max_target_positions, dims.head_dim) for _ in range(2 * dims.decoder_layers)
    ]
    token = torch.full((1, tokens), 50257, dtype=torch.long)
    offset = torch.tensor([0 if tokens > 1 else 3], dtype=torch.long)
    return (mel,), (token, offset, *cache, *cross)


def observe_encoder(model: nn.Module, hooks: list[tuple[nn.Module, Callable]], mels: Iterable[np.ndarray]) -> None:
    """Run `model`'s encoder pass (EncoderGraph: the encoder and the cross K/V projections) on each mel
    ([1, n_mels, T], the runtime's input) with forward `hooks` on their modules, removed afterwards: the
    calibrations (SmoothQuant's maxima, the low-rank bench's output statistics) record what they see."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    graph = EncoderGraph(model).eval()
    try:
        with torch.no_grad():
            for mel in mels:
                graph(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()


def load_model(checkpoint) -> nn.Module:
    """A HF Whisper checkpoint in float32, eval mode (teachers are stored fp16)."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
