"""WER/CER with Whisper's English text normaliser (the `whisper-normalizer` package) and jiwer."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _normaliser():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    return _normaliser()(text)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (errors / reference words) after normalisation; 0.0 when every reference is empty."""
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def cer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r.strip()]
    return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs])) if pairs else 0.0
