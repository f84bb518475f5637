"""Length-proportional Whisper forward passes (the student's input convention).

Whisper's encoder insists on a 30 s (3000-frame) mel; on CPU boards that window dominates latency. The student
instead encodes the unpadded mel of the actual audio (`log_mel(audio, pad_to_30s=False)`), with the positional
table sliced to the length. Batches of different lengths are right-padded, and masks make padding invisible:
  * the mel beyond a sample's length is zeroed and conv1's output there is zeroed, so the convolutions see the
    same zero padding an unpadded single sample sees at its end;
  * padded encoder frames are masked out of encoder self-attention and decoder cross-attention.
So a sample's outputs do not depend on what else is in its batch (tested to float tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # [B, S, D], S = ceil(T / 2)
    lengths: torch.Tensor  # [B] valid encoder frames per sample
    key_mask: torch.Tensor | None  # [B, 1, 1, S] additive mask (0 or -inf-like), None when nothing is padded


def encoder_lengths(frame_lengths: torch.Tensor) -> torch.Tensor:
    """Encoder frames produced from `frame_lengths` mel frames (conv2 has stride 2, padding 1)."""
    return (frame_lengths + 1) // 2


def _additive_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill(~valid, torch.finfo(dtype).min)[
        :, None, None, :
    ]


def encode(encoder: nn.Module, mel: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> EncoderOutput:
    """Run a HF `WhisperEncoder` on a [B, n_mels, T] mel of any T <= 2 * max_source_positions.

    frame_lengths=None means no sample is padded: then nothing depends on the data, so the same function is
    what the exporters trace with a dynamic time axis (no mask, no data-dependent branch).
    """
    batch, _, frames = mel.shape
    max_frames = 2 * encoder.embed_positions.weight.shape[0]
    if not torch.compiler.is_compiling() and frames > max_frames:
        raise ValueError(f"mel has {frames} frames; the encoder takes at most {max_frames} (30 s)")
    frame_valid = None
    if frame_lengths is not None:
        frame_valid = torch.arange(frames, device=mel.device)[None, :] < frame_lengths[:, None]
        if bool(frame_valid.all()):
            frame_valid = None  # nothing padded in this batch: skip the masks
    if frame_valid is not None:
        mel = mel * frame_valid[:, None, :].to(mel.dtype)
    x = nn.functional.gelu(encoder.conv1(mel))
    if frame_valid is not None:
        x = x * frame_valid[:, None, :].to(x.dtype)
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    steps = x.shape[1]
    x = x + encoder.embed_positions.weight[:steps].to(x.dtype)
    key_mask = None
    if frame_lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
    else:
        lengths = encoder_lengths(frame_lengths)
        if frame_valid is not None:
            key_mask = _additive_mask(torch.arange(steps, device=x.device)[None, :] < lengths[:, None], x.dtype)
    for layer in encoder.layers:
        x = layer(x, attention_mask=key_mask)
    return EncoderOutput(encoder.layer_norm(x), lengths, key_mask)


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # [B, L, V]
    hidden: list[torch.Tensor]  # one [B, L, D] per decoder layer; the last one after the final layer norm


def causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[1, 1, L, L] additive mask: position i attends to positions <= i. Passed explicitly so causality does not
    depend on which attention kernel transformers picks (SDPA infers it only when no mask is given)."""
    blocked = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)[
        None, None
    ]


def decode(model: nn.Module, decoder_input_ids: torch.Tensor, enc: EncoderOutput) -> DecoderOutput:
    """Teacher-forced decoder pass over a length-proportional encoder output (no KV cache): logits and every
    layer's hidden states (the targets of FUTO's audio-context loss).

    Right-padded label positions never influence earlier positions (causal mask), so a per-token loss mask is
    all that label padding needs.
    """
    decoder = model.model.decoder
    length = decoder_input_ids.shape[1]
    positions = decoder.embed_positions.weight[:length]
    x = decoder.embed_tokens(decoder_input_ids) + positions[None].to(enc.hidden.dtype)
    mask = causal_mask(length, x.dtype, x.device)
    hidden = []
    for layer in decoder.layers:
        x = layer(
            x,
            attention_mask=mask,
            encoder_hidden_states=enc.hidden,
            encoder_attention_mask=enc.key_mask,
            use_cache=False,
        )
        hidden.append(x)
    hidden[-1] = decoder.layer_norm(x)
    return DecoderOutput(model.proj_out(hidden[-1]), hidden)


def decode_logits(model: nn.Module, decoder_input_ids: torch.Tensor, enc: EncoderOutput) -> torch.Tensor:
    """Teacher-forced decoder logits [B, L, V] (see `decode`)."""
    return decode(model, decoder_input_ids, enc).logits


def teacher_forced(
    model: nn.Module, mel: torch.Tensor, decoder_input_ids: torch.Tensor, frame_lengths: torch.Tensor | None = None
) -> DecoderOutput:
    """Encoder + teacher-forced decoder in one call: a student on its unpadded mel (with `frame_lengths` for a
    padded batch) or a teacher on its 30 s one (all 3000 frames valid: no lengths needed)."""
    return decode(model, decoder_input_ids, encode(model.model.encoder, mel, frame_lengths))
