"""Torch-free detokenizer: byte-level BPE decoding from a Whisper `tokenizer.json` (no transformers, no tokenizers).

Decoding byte-level BPE needs no merges: each token string maps its characters back to bytes through GPT-2's
fixed byte<->unicode table, and the bytes of consecutive tokens are joined and decoded as UTF-8 (a multi-byte
character may span tokens, so decoding happens once over the joined bytes).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import ModelError


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onwards."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    byte_values = printable[:]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(byte_values, chars, strict=True)}


class Detokenizer:
    """ids -> text for Whisper's byte-level BPE; ids at or above `first_special` (eos, sot, ...) are dropped."""

    def __init__(self, tokens: dict[int, str], first_special: int) -> None:
        self.tokens = tokens
        self.first_special = first_special

    @classmethod
    def from_file(cls, path: str | Path, first_special: int) -> Detokenizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            vocab = data["model"]["vocab"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path}: not a readable tokenizer.json ({exc}); re-run edge-askd export") from None
        tokens = {int(i): tok for tok, i in vocab.items()}
        for added in data.get("added_tokens", []):
            tokens[int(added["id"])] = added["content"]
        return cls(tokens, first_special)

    def decode(self, ids: list[int]) -> str:
        table = _unicode_to_byte()
        out = bytearray()
        for i in ids:
            if i >= self.first_special or i not in self.tokens:
                continue
            out.extend(table[ch] for ch in self.tokens[i] if ch in table)
        return out.decode("utf-8", errors="replace")
