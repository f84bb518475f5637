"""The graph's token ids vs the tokenizer's: identity, or a shortlisted output vocabulary.

An English student only ever emits a few thousand of Whisper's 51,865 tokens, yet the output projection over all
of them is about half of each decoder step (base: 26.6M of a step's ~49M multiply-adds) and the tied table most
of the decoder's weights. A shortlisted export keeps K rows of the table (`export/shortlist.py` picks them);
its graphs read and emit ids 0..K-1. `VocabMap` is the one place that translates: the decoding settings (prompt,
eos, suppress lists) go into graph ids once, the generated tokens come back out as tokenizer ids, so transcripts
and `Transcription.tokens` are those of the full vocabulary. Restricting the argmax to the shortlist is the only
change: a token outside it can no longer win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .decoding import DecodeSettings
from .errors import ModelError
from .tokenizer import Detokenizer


@dataclass(frozen=True, eq=False)
class VocabMap:
    """ids: the tokenizer id of each graph id (ascending), or None for a full-vocabulary graph (identity)."""

    ids: np.ndarray | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> VocabMap:
        try:
            ids = np.asarray(json.loads(Path(path).read_text(encoding="utf-8"))["ids"], dtype=np.int64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a readable vocabulary shortlist ({exc}); re-run edge-askd export") from None
        if ids.ndim != 1 or not len(ids) or np.any(np.diff(ids) <= 0):
            raise ModelError(f"{path}: shortlist ids must be unique and ascending; re-run edge-askd export")
        return cls(ids)

    @property
    def shortlisted(self) -> bool:
        return self.ids is not None

    @property
    def size(self) -> int | None:
        return None if self.ids is None else len(self.ids)

    @cached_property
    def _index(self) -> dict[int, int]:
        return {int(full): graph for graph, full in enumerate(self.ids)}

    def to_graph(self, ids: list[int] | tuple[int, ...]) -> list[int]:
        """Tokenizer ids -> graph ids; an id outside the shortlist is an error (prompt tokens must be in it)."""
        if self.ids is None:
            return list(ids)
        index = self._index
        missing = [i for i in ids if i not in index]
        if missing:
            raise ModelError(f"token id(s) {missing} are not in this export's shortlisted vocabulary; re-export")
        return [index[i] for i in ids]

    def to_full(self, ids: list[int]) -> list[int]:
        return list(ids) if self.ids is None else [int(self.ids[i]) for i in ids]

    def settings(self, settings: DecodeSettings) -> DecodeSettings:
        """The settings in graph ids; suppressed tokens outside the shortlist are already impossible."""
        if self.ids is None:
            return settings
        index = self._index
        return replace(
            settings,
            prompt=tuple(self.to_graph(settings.prompt)),
            eos=index[settings.eos],
            suppress_tokens=tuple(index[i] for i in settings.suppress_tokens if i in index),
            begin_suppress_tokens=tuple(index[i] for i in settings.begin_suppress_tokens if i in index),
        )

    def detokenizer(self, detok: Detokenizer) -> Detokenizer:
        """A detokenizer that reads graph ids (specials stay last: the shortlist keeps tokenizer order)."""
        if self.ids is None:
            return detok
        first = int(np.searchsorted(self.ids, detok.first_special))
        return Detokenizer([detok.piece(int(f)) for f in self.ids[:first]], first)


__all__ = ["VocabMap"]
