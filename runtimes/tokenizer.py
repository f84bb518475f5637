"""Torch-free detokenizer: byte-level BPE decoding from a Whisper `tokenizer.json` (no transformers, no tokenizers).

Decoding byte-level BPE needs no merges: each token string maps its characters back to bytes through GPT-2's
fixed byte<->unicode table, and the bytes of consecutive tokens are joined and decoded as UTF-8 (a multi-byte
character may span tokens, so decoding happens once over the joined bytes).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from array import array
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from .atomic import atomic_path
from .errors import ModelError

TABLE = "detokenizer.bin"  # an export's precomputed table (`Detokenizer.write_table`)
TABLE_MAGIC = b"EDTK"
TABLE_VERSION = 1
_U32 = next(code for code in "IL" if array(code).itemsize == 4)  # the table's offsets: "I" on every usual ABI


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
    """ids -> text for Whisper's byte-level BPE; ids at or above `first_special` (eos, sot, ...) are dropped.

    Holds every ordinary token's bytes in one string with an offset per id (~0.5 MB for Whisper's 50,257), not
    the parsed tokenizer.json: its merges and a str -> id dict cost a board ~30 MB at load and ~20 MB for good.
    An export writes the same bytes and offsets as `detokenizer.bin` (`write_table`), which loads in ~1 ms where
    reading them out of tokenizer.json takes ~100 ms."""

    def __init__(self, pieces: list[bytes | None], first_special: int) -> None:
        """pieces: by id, below first_special; None where the tokenizer has no such id."""
        chunks = [piece or b"" for piece in pieces]
        offsets = array(_U32, [0])
        for chunk in chunks:
            offsets.append(offsets[-1] + len(chunk))
        self._init(b"".join(chunks), offsets, first_special)

    def _init(self, blob: bytes, offsets: array, first_special: int) -> None:
        self._blob = blob
        self._offsets = offsets  # piece i is blob[offsets[i]:offsets[i + 1]]
        self.first_special = first_special

    def piece(self, token: int) -> bytes:
        """The bytes of ordinary token `token` (b"" for a special or unknown id)."""
        if not 0 <= token < self.first_special:
            return b""
        return self._blob[self._offsets[token] : self._offsets[token + 1]]

    @classmethod
    def from_file(cls, path: str | Path, first_special: int) -> Detokenizer:
        path = Path(path)
        try:
            # GPT-2's byte <-> unicode table as a str.translate map to latin-1, whose encoding is the bytes
            to_latin1 = {ord(ch): chr(b) for ch, b in _unicode_to_byte().items()}
            pieces: list[bytes | None] = [None] * first_special
            for token, i in _vocab_entries(path.read_bytes()):
                if 0 <= i < first_special:
                    pieces[i] = token.translate(to_latin1).encode("latin-1", errors="ignore")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path}: not a readable tokenizer.json ({exc}); re-run edge-askd export") from None
        if not any(pieces):
            raise ModelError(f"{path}: tokenizer.json has no BPE vocabulary; re-run edge-askd export")
        return cls(pieces, first_special)

    def write_table(self, path: Path) -> None:
        """`detokenizer.bin`: magic, version, first_special, the first_special + 1 offsets (uint32, little-endian),
        then the pieces' bytes."""
        offsets = array(_U32, self._offsets)
        if sys.byteorder != "little":
            offsets.byteswap()
        header = TABLE_MAGIC + struct.pack("<II", TABLE_VERSION, self.first_special)
        with atomic_path(path) as tmp:
            tmp.write_bytes(header + offsets.tobytes() + self._blob)

    @classmethod
    def from_table(cls, path: str | Path) -> Detokenizer:
        path = Path(path)
        try:
            data = path.read_bytes()
            version, first = struct.unpack_from("<II", data, len(TABLE_MAGIC))
            start = len(TABLE_MAGIC) + 8
            offsets = array(_U32)
            offsets.frombytes(data[start : start + 4 * (first + 1)])
            if sys.byteorder != "little":
                offsets.byteswap()
            blob = data[start + 4 * (first + 1) :]
            valid = (
                data.startswith(TABLE_MAGIC)
                and version == TABLE_VERSION
                and len(offsets) == first + 1
                and offsets[0] == 0
                and offsets[-1] == len(blob)
            )
        except (OSError, ValueError, struct.error) as exc:
            raise ModelError(f"{path}: not a readable detokenizer table ({exc}); re-run edge-askd export") from None
        if not valid:
            raise ModelError(
                f"{path}: not an edge-askd detokenizer table (version {TABLE_VERSION}); re-run edge-askd export"
            )
        detok = cls.__new__(cls)
        detok._init(blob, offsets, first)
        return detok

    def decode(self, ids: list[int]) -> str:
        blob, offsets, first = self._blob, self._offsets, self.first_special
        joined = b"".join(blob[offsets[i] : offsets[i + 1]] for i in ids if 0 <= i < first)
        return joined.decode("utf-8", errors="replace")


_VOCAB_ENTRY = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:\s*(\d+)')  # "token": id, the token JSON-escaped
_VOCAB_END = re.compile(rb'\}\s*,\s*"merges"\s*:')


def _vocab_entries(data: bytes) -> Iterator[tuple[str, int]]:
    """(token, id) of the BPE model's vocab object, read from the file's bytes: the rest of the file (the ~50k
    merges) never becomes Python objects, and no str -> id dict is built. The whole file is parsed instead
    where the layout is unexpected."""
    model = data.find(b'"model"')
    at = data.find(b'"vocab"', model) if model >= 0 else -1
    # The vocab object ends where "merges" follows a closing brace (a token spelled "merges" follows a comma).
    after = _VOCAB_END.search(data, at) if at >= 0 else None
    end = after.start() if after else -1
    if end < 0 or data.find(b"{", at, end) < 0:
        yield from json.loads(data)["model"]["vocab"].items()
        return
    for m in _VOCAB_ENTRY.finditer(data, data.index(b"{", at), end):
        raw = m.group(1)
        token = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8")
        yield token, int(m.group(2))
