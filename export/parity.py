"""Parity gate: exported artifacts vs the PyTorch checkpoint on real speech.

* fp32 variants: max |logit diff| <= 1e-3 over every teacher-forced step of PyTorch's greedy transcript, and
  identical greedy tokens on every clip.
* quantized variants: WER on the same real clips within `wer_budget` (absolute, default +1.0 point) of the
  fp32 variant of the same format; greedy-token agreement is recorded alongside.
The runtime side (backend adapters, the greedy loop, mel) is exactly what a board runs; only the reference
uses torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edge_askd.length_aware import decode_logits, encode
from edge_askd_runtime.decoding import (
    Backend,
    DecodeSettings,
    allocate_cache,
    forced_logits,
    greedy_decode,
    greedy_step,
    token_cap,
)
from edge_askd_runtime.features import SAMPLE_RATE
from edge_askd_runtime.scoring import wer
from edge_askd_runtime.tokenizer import Detokenizer

FP32_MAX_LOGIT_DIFF = 1e-3
# Every real clip with a reference (about 60 words): on fewer words one flipped word already costs several
# WER points, more than the default budget.
DEFAULT_CLIPS = (
    "jfk",
    "arctic_a0007",
    "arctic_a0009",
    "librivox_0870",
    "librivox_0880",
    "librivox_0890",
    "librivox_0930",
)


@dataclass(frozen=True)
class ParityConfig:
    clips: tuple[str, ...] = DEFAULT_CLIPS
    fp32_max_logit_diff: float = FP32_MAX_LOGIT_DIFF
    wer_budget: float = 1.0  # absolute WER points (percent) a quantized variant may lose vs fp32


@dataclass
class ClipReference:
    name: str
    reference_text: str
    audio_seconds: float
    mel: np.ndarray  # [1, n_mels, T], exactly the runtime's input
    tokens: list[int]  # PyTorch greedy tokens (no prompt, no eos)
    logits: np.ndarray  # [len(prompt) + len(tokens), V] teacher-forced PyTorch logits
    text: str


@dataclass
class ParityResult:
    passed: bool
    max_logit_diff: float
    greedy_identical: int  # clips whose greedy tokens equal PyTorch's
    token_agreement: float  # fraction of PyTorch's tokens matched position by position
    wer: float  # percent, on the clips' reference texts
    reference_wer: float  # PyTorch's WER on the same clips
    clips: int
    reason: str = ""
    transcripts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def torch_reference(
    model, mel: np.ndarray, settings: DecodeSettings, audio_seconds: float
) -> tuple[list[int], np.ndarray]:
    """PyTorch greedy (same suppression and token cap as the runtime) and its teacher-forced logits."""
    enc = encode(model.model.encoder, torch.from_numpy(mel))
    prompt = list(settings.prompt)
    tokens: list[int] = []
    cap = token_cap(settings, audio_seconds)
    while len(prompt) + len(tokens) < settings.max_target_positions:
        step = decode_logits(model, torch.tensor([prompt + tokens]), enc)[0, -1].float().numpy()
        if greedy_step(step, tokens, settings, cap) is not None:
            break
    logits = decode_logits(model, torch.tensor([prompt + tokens]), enc)[0].float().numpy()
    return tokens, logits


def build_references(model, clips: list[tuple[str, np.ndarray, str]], settings, make_mel, detok) -> list[ClipReference]:
    """clips: (name, 16 kHz audio, reference text); make_mel: audio -> [1, n_mels, T] as the runtime builds it."""
    refs = []
    for name, audio, text in clips:
        mel = make_mel(audio)
        seconds = len(audio) / SAMPLE_RATE
        tokens, logits = torch_reference(model, mel, settings, seconds)
        refs.append(ClipReference(name, text, seconds, mel, tokens, logits, detok.decode(tokens).strip()))
    return refs


def check_backend(
    backend: Backend,
    refs: list[ClipReference],
    settings: DecodeSettings,
    detok: Detokenizer,
    cache_shapes: list[tuple[int, ...]],
    make_mel=None,
) -> ParityResult:
    """Run `backend` on every reference clip: teacher-forced logit diff, free greedy tokens and WER.

    make_mel: the variant's own input builder when it differs from the reference's (static TFLite buckets).
    """
    cache = allocate_cache(cache_shapes)
    max_diff = 0.0
    identical = 0
    matched = total = 0
    hyps: dict[str, str] = {}
    for ref in refs:
        mel = ref.mel if make_mel is None else make_mel(ref)
        cross = backend.run_encoder(mel)
        ids = list(settings.prompt) + ref.tokens
        logits = forced_logits(backend, cross, ids, cache)
        max_diff = max(max_diff, float(np.max(np.abs(logits - ref.logits))))
        result = greedy_decode(backend, cross, settings, ref.audio_seconds, cache)
        identical += result.tokens == ref.tokens
        matched += sum(a == b for a, b in zip(result.tokens, ref.tokens, strict=False))
        total += max(len(ref.tokens), len(result.tokens))
        hyps[ref.name] = detok.decode(result.tokens).strip()
    return ParityResult(
        passed=False,
        max_logit_diff=max_diff,
        greedy_identical=identical,
        token_agreement=matched / total if total else 1.0,
        wer=100.0 * wer([r.reference_text for r in refs], [hyps[r.name] for r in refs]),
        reference_wer=100.0 * wer([r.reference_text for r in refs], [r.text for r in refs]),
        clips=len(refs),
        transcripts=hyps,
    )


def gate(result: ParityResult, precision: str, config: ParityConfig, fp32_wer: float | None) -> ParityResult:
    """Set `passed`/`reason`: strict parity for fp32, a WER budget against fp32 for everything else."""
    if precision == "fp32":
        if result.max_logit_diff > config.fp32_max_logit_diff:
            result.reason = f"max logit diff {result.max_logit_diff:.2e} > {config.fp32_max_logit_diff:.0e}"
        elif result.greedy_identical != result.clips:
            result.reason = f"greedy tokens differ from PyTorch on {result.clips - result.greedy_identical} clip(s)"
    else:
        # Without an fp32 artifact of the same format, PyTorch on the same input is the fp32 model.
        baseline = result.reference_wer if fp32_wer is None else fp32_wer
        if result.wer > baseline + config.wer_budget:
            result.reason = f"WER {result.wer:.2f} > fp32 {baseline:.2f} + budget {config.wer_budget:.2f}"
    result.passed = not result.reason
    return result
