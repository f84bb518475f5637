"""The project's one way to write a file atomically: `path` holds either its old content or all of the new one.

Every writer (transcripts, manifests, results, training logs and caches, synthesised audio) goes through
`atomic_path`: a unique temporary name in the target's directory (O_EXCL on a random suffix, so two processes
writing the same file never share a temporary, and the rename stays on one filesystem), renamed over the target
only once the content is complete and flushed, and removed if writing fails. The temporary keeps the target's
suffix, so writers that pick a format from the name (soundfile) still do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new, empty temporary path to write the whole file to; on success it replaces `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.with_name(f".{target.stem}.{os.urandom(4).hex()}.tmp{target.suffix}")
        try:
            # The mode follows the umask like any new file (mkstemp would force 0600).
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the content on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8, "\\n" line ends) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], data, indent: int | None = 2, **dumps) -> Path:
    """`data` as JSON (with a final newline) to `path` atomically; `dumps` goes to json.dumps."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps) + "\n")


__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text"]
