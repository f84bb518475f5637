"""sha256 of an export's files, remembered by their stat, so a load reads a model file again only once it changed.

Every load checks each file it uses against the manifest's sha256. Reading base's int8 files (116 MB) for that
took ~90 ms of a ~300 ms load on an x86 laptop-class CPU, and a Pi 4 hashes at a fifth of that speed. A file whose
device, inode, size, mtime and ctime are those recorded when it was last hashed has not been written since: every
write moves mtime and ctime, and ctime cannot be set back from user space (git's index trusts the same stat). Its
recorded digest is reused. `edge-askd verify` forgets an export's records first, so it always reads every byte
(a bit flipped on the medium moves no timestamp).

The records live in `cache_root()/file-hashes.json`. Where that cannot be written (a read-only home on a board),
every load hashes, as before.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .atomic import atomic_path
from .paths import cache_root

RECORDS = "file-hashes.json"
MAX_RECORDS = 512  # oldest dropped first: a board holds a few exports, a test run a few hundred files
# A file written less than this long ago is hashed but not recorded: on filesystems with coarse timestamps (FAT
# on an SD card: 2 s) a second write within the same tick would leave mtime where it was.
SETTLE_SECONDS = 3.0


def sha256_file(path: Path) -> str:
    # Imported here: hashlib loads OpenSSL (~4 MB resident), which a load whose files are all recorded never needs.
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _records_path() -> Path:
    return cache_root() / RECORDS


# The records as last parsed, by the records file's path and stat: a load checks each of its files in turn, and
# parsing the JSON for every one of them cost ~1.5 ms each (280 records, x86; a Pi 4 is ~5x slower).
_parsed: tuple[tuple, dict[str, list]] | None = None


def _read_records() -> dict[str, list]:
    global _parsed
    path = _records_path()
    try:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if _parsed is None or _parsed[0] != key:
            records = json.loads(path.read_text(encoding="utf-8"))
            _parsed = (key, records if isinstance(records, dict) else {})
    except (OSError, ValueError):
        return {}
    return dict(_parsed[1])  # a copy: callers change it before writing it back


def _write_records(records: dict[str, list]) -> None:
    while len(records) > MAX_RECORDS:
        records.pop(next(iter(records)))
    try:
        with atomic_path(_records_path()) as tmp:
            tmp.write_text(json.dumps(records), encoding="utf-8")
    except OSError:
        pass  # nowhere to remember: the next load hashes again


def file_sha256(path: Path) -> str:
    """The sha256 of `path`: the recorded one where its stat is unchanged since it was hashed, else read."""
    key = str(Path(path).resolve())
    stat = os.stat(key)
    records = _read_records()
    record = records.get(key)
    if isinstance(record, list) and len(record) == 6 and record[:5] == _stamp(stat):
        return str(record[5])
    digest = sha256_file(Path(key))
    if time.time() - stat.st_mtime >= SETTLE_SECONDS:
        records.pop(key, None)
        records[key] = [*_stamp(stat), digest]
        _write_records(records)
    return digest


def forget(directory: Path) -> None:
    """Drop the records of every file under `directory`, so each is read again on its next check."""
    prefix = str(Path(directory).resolve()) + os.sep
    records = _read_records()
    kept = {key: value for key, value in records.items() if not key.startswith(prefix)}
    if len(kept) != len(records):
        _write_records(kept)


__all__ = ["file_sha256", "forget", "sha256_file"]
