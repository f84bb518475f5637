"""The one greedy decoding loop with a fixed-size KV cache, shared by every backend.

A backend only runs graphs (`Backend` protocol); this module owns the cache, the prompt, the token rules
(suppress lists as in the generation config) and the guards against runaway output: a cap on tokens per
second of audio and a repetition detector. The silence gate lives here too so every backend skips silence
before spending an encoder pass on it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """What an inference runtime adapter provides; see `edge_askd_runtime.backends`."""

    name: str
    # Whether one decoder call takes several tokens (the whole prompt), and whether it takes only the filled
    # cache slots; False: one token and all 448 slots per call (TFLite's static shapes, older exports).
    multi_token: bool
    # Whether a call returns a logits row for every token fed (one call verifies a draft), or only the last one's.
    every_position_logits: bool
    dynamic_cache: bool
    # Whether the decoder graph updates the cache itself and the backend keeps it (on its device, between calls):
    # the loop then passes no cache and gets no new K/V back (ONNX GPU variant).
    cache_in_graph: bool

    def run_encoder(self, mel: np.ndarray) -> list[np.ndarray]:
        """mel [1, n_mels, T] float32 -> [cross_k0, cross_v0, cross_k1, ...], each [1, H, S, Dh]."""
        ...

    def bind_cross(self, cross: list[np.ndarray]) -> None:
        """Fix the cross K/V for the coming decoder steps (a backend may copy them into its inputs once)."""
        ...

    def run_decoder_step(
        self, tokens: list[int], offset: int, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """T tokens at positions offset.. -> (logits [T, V] float32 where `every_position_logits`, else the last
        token's [1, V]; [new_k0, new_v0, ...] each [1, H, T, Dh]); cache ([1, H, S, Dh] each) is read only.
        T > 1 only where `multi_token`; S < 448 only where `dynamic_cache`; where `cache_in_graph`, cache is empty
        and so is the returned list."""
        ...


@dataclass(frozen=True)
class DecodeSettings:
    prompt: tuple[int, ...]  # e.g. (sot, en, transcribe, notimestamps)
    eos: int
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    max_target_positions: int = 448
    # Guards. Fast English speech is ~4-5 tokens/s; 12/s plus a floor leaves room for numbers and names
    # while stopping a hallucination loop on a short clip long before the 448-token cache fills.
    max_tokens_per_second: float = 12.0
    min_token_cap: int = 16
    # A period-p n-gram repeated this many times in a row ends decoding (the repeats are dropped).
    max_repeats: int = 4
    max_repeat_period: int = 16

    # Index arrays built once per settings object, not on every decoder step.
    @cached_property
    def suppress_index(self) -> np.ndarray:
        return np.asarray(self.suppress_tokens, dtype=np.int64)

    @cached_property
    def begin_suppress_index(self) -> np.ndarray:
        return np.asarray(self.begin_suppress_tokens, dtype=np.int64)


@dataclass
class DecodeResult:
    tokens: list[int]  # generated tokens, without prompt and eos
    stop_reason: str  # "eos" | "token_cap" | "repetition" | "cache_full"
    steps: int = 0  # decoder calls
    drafted: int = 0  # tokens of the draft accepted (decoded in the first call)
    step_seconds: list[float] = field(default_factory=list)


def apply_suppression(logits: np.ndarray, settings: DecodeSettings, first_step: bool) -> np.ndarray:
    """Mask suppressed tokens in place (logits [V] float32) and return them."""
    if settings.suppress_tokens:
        logits[settings.suppress_index] = -np.inf
    if first_step and settings.begin_suppress_tokens:
        logits[settings.begin_suppress_index] = -np.inf
    return logits


def token_cap(settings: DecodeSettings, audio_seconds: float) -> int:
    room = settings.max_target_positions - len(settings.prompt)
    return max(0, min(room, max(settings.min_token_cap, math.ceil(settings.max_tokens_per_second * audio_seconds))))


def repetition_start(tokens: list[int], max_repeats: int, max_period: int) -> int | None:
    """Index where a run of `max_repeats` identical period-p blocks ends the sequence, keeping one block; else None."""
    for period in range(1, max_period + 1):
        span = period * max_repeats
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        block = tail[-period:]
        if all(tail[i] == block[i % period] for i in range(span)):
            return len(tokens) - span + period
    return None


def greedy_step(logits: np.ndarray, generated: list[int], settings: DecodeSettings, cap: int) -> str | None:
    """Pick the next token into `generated`, applying every rule and guard; -> stop reason, or None to go on.

    The one place the token policy lives: the runtime loop and the PyTorch parity reference both call it.
    """
    logits = apply_suppression(np.array(logits, dtype=np.float32, copy=True), settings, first_step=not generated)
    token = int(np.argmax(logits))
    if token == settings.eos:
        return "eos"
    generated.append(token)
    cut = repetition_start(generated, settings.max_repeats, settings.max_repeat_period)
    if cut is not None:
        del generated[cut:]
        return "repetition"
    if len(generated) >= cap:
        return "token_cap"
    return None


def allocate_cache(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    return [np.zeros(shape, dtype=np.float32) for shape in shapes]


def cache_input(backend: Backend, cache: list[np.ndarray], offset: int) -> list[np.ndarray]:
    """What a call reads of the cache: nothing where the backend keeps it, the filled slots (at least one, masked
    at offset 0) where the graph's slot axis is dynamic, else all of them."""
    if backend.cache_in_graph:
        return []
    if not backend.dynamic_cache:
        return cache
    filled = max(offset, 1)
    return [np.ascontiguousarray(layer_cache[:, :, :filled, :]) for layer_cache in cache]


def write_cache(cache: list[np.ndarray], new_kv: list[np.ndarray], offset: int) -> None:
    """Store a call's new K/V ([1, H, T, Dh] each) in the fixed caches at slots offset..offset + T."""
    for layer_cache, new in zip(cache, new_kv, strict=True):
        layer_cache[:, :, offset : offset + new.shape[2], :] = new


def decoder_rows(backend: Backend, tokens: list[int], offset: int, cache: list[np.ndarray]) -> np.ndarray:
    """One decoder call for `tokens` at `offset`, the cache read and written back around it -> its logits rows
    ([len(tokens), V] where the backend returns every position's, else [1, V])."""
    logits, new_kv = backend.run_decoder_step(tokens, offset, cache_input(backend, cache, offset))
    if not backend.cache_in_graph:
        write_cache(cache, new_kv, offset)
    return logits


def decoder_call(backend: Backend, tokens: list[int], offset: int, cache: list[np.ndarray]) -> np.ndarray:
    """One decoder call -> the last token's logits [V]."""
    return decoder_rows(backend, tokens, offset, cache)[-1]


def greedy_decode(
    backend: Backend,
    cross: list[np.ndarray],
    settings: DecodeSettings,
    audio_seconds: float,
    cache: list[np.ndarray],
    draft: list[int] | tuple[int, ...] = (),
) -> DecodeResult:
    """Feed the prompt (in one call where the backend takes several tokens), then pick argmax one token per
    call until eos or a guard fires.

    `cache` is a list of [1, H, max_target_positions, Dh] float32 arrays (self_k0, self_v0, ...), reused across
    calls; only slots below the current offset are ever read, so it never needs clearing.

    `draft`: a guess at the tokens (graph ids), e.g. a stream's last partial, decoded from the start of the same
    audio. Where the backend returns every position's logits, the prompt and the draft go in one call and every
    draft token that greedy decoding picks itself is taken from it (speculative decoding, with a draft that
    cost nothing): the same tokens as without a draft, in fewer calls. A stale slot a rejected draft token left
    in the cache sits at or past the offset, which no call reads.
    """
    backend.bind_cross(cross)
    cap = token_cap(settings, audio_seconds)
    prompt = list(settings.prompt)
    generated: list[int] = []
    step_seconds: list[float] = []
    feed = prompt if backend.multi_token else prompt[:1]
    offset = 0
    reason = "cache_full"
    drafted = 0
    usable = backend.multi_token and backend.every_position_logits
    draft = list(draft)[: max(0, min(cap, settings.max_target_positions - len(prompt) - 1))] if usable else []
    if draft:
        start = time.perf_counter()
        rows = decoder_rows(backend, prompt + draft, 0, cache)
        step_seconds.append(time.perf_counter() - start)
        stop = None
        for i, row in enumerate(rows[len(prompt) - 1 :]):  # row i predicts generated token i
            stop = greedy_step(row, generated, settings, cap)
            if stop is not None or i == len(draft) or generated[-1] != draft[i]:
                break
        drafted = _shared_prefix(generated, draft)
        if stop is not None:
            return DecodeResult(generated, stop, steps=1, step_seconds=step_seconds, drafted=drafted)
        # The cache holds the prompt and the accepted draft tokens; the token just picked is fed next.
        offset, feed = len(prompt) + drafted, generated[-1:]
    while offset + len(feed) <= settings.max_target_positions:
        start = time.perf_counter()
        logits = decoder_call(backend, feed, offset, cache)
        step_seconds.append(time.perf_counter() - start)
        offset += len(feed)
        if offset < len(prompt):
            feed = [prompt[offset]]
            continue
        stop = greedy_step(logits, generated, settings, cap)
        if stop is not None:
            reason = stop
            break
        feed = generated[-1:]
    return DecodeResult(generated, reason, steps=len(step_seconds), step_seconds=step_seconds, drafted=drafted)


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def forced_logits(backend: Backend, cross: list[np.ndarray], ids: list[int], cache: list[np.ndarray]) -> np.ndarray:
    """Teacher-forced logits [len(ids), V]: row i predicts ids[i + 1] (used by parity checks). One token per
    call, the calls greedy decoding makes (and the only kind a TFLite signature or an older export answers with
    every row)."""
    backend.bind_cross(cross)
    rows = []
    for offset, token in enumerate(ids):
        logits = decoder_call(backend, [token], offset, cache)
        rows.append(np.array(logits, dtype=np.float32, copy=True))
    return np.stack(rows)


@dataclass(frozen=True)
class SilenceGate:
    """Skip decoding when no 30 ms frame is louder than `threshold_dbfs` (Whisper hallucinates on silence)."""

    threshold_dbfs: float = -45.0
    frame_samples: int = 480

    def is_silent(self, audio: np.ndarray) -> bool:
        if audio.size == 0:
            return True
        usable = (audio.size // self.frame_samples) * self.frame_samples
        frames = audio[:usable].reshape(-1, self.frame_samples) if usable else audio[None, :]
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
        loudest = 20.0 * np.log10(max(float(rms.max()), 1e-12))
        return loudest < self.threshold_dbfs
