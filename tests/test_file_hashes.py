"""The runtime's sha256 records: a file is read again only once its stat moved (runtimes/file_hashes.py)."""

from __future__ import annotations

import os
import time

import pytest

from edge_askd_runtime import file_hashes


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGE_ASKD_CACHE", str(root))
    return root


def _settled(path, seconds_ago: float = 60.0):
    past = time.time() - seconds_ago
    os.utime(path, (past, past))
    return path


def _reads(monkeypatch) -> list:
    reads: list = []
    real = file_hashes.sha256_file

    def counted(path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(file_hashes, "sha256_file", counted)
    return reads


def test_an_unchanged_file_is_hashed_once_and_a_rewritten_one_again(tmp_path, cache, monkeypatch):
    reads = _reads(monkeypatch)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    _settled(model)
    digest = file_hashes.file_sha256(model)
    assert len(reads) == 1 and digest == file_hashes.sha256_file(model)
    assert file_hashes.file_sha256(model) == digest and len(reads) == 2  # the record, not the bytes
    assert (cache / file_hashes.RECORDS).is_file()

    # Same size, mtime put back: ctime still moved, so the bytes are read again and the change is seen.
    stat = model.stat()
    model.write_bytes(b"weightz" * 1000)
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model.stat().st_size == stat.st_size and model.stat().st_mtime_ns == stat.st_mtime_ns
    assert file_hashes.file_sha256(model) != digest and len(reads) == 3


def test_a_file_written_just_now_is_not_recorded(tmp_path, cache, monkeypatch):
    """A second write within a coarse filesystem's timestamp tick would not move mtime."""
    reads = _reads(monkeypatch)
    model = tmp_path / "model.bin"
    model.write_bytes(b"fresh")
    file_hashes.file_sha256(model)
    file_hashes.file_sha256(model)
    assert len(reads) == 2 and not (cache / file_hashes.RECORDS).exists()


def test_forget_drops_one_directory_only(tmp_path, cache, monkeypatch):
    reads = _reads(monkeypatch)
    (tmp_path / "a").mkdir()
    (tmp_path / "ab").mkdir()
    kept, dropped = tmp_path / "ab" / "f", tmp_path / "a" / "f"
    for path in (kept, dropped):
        path.write_bytes(b"x")
        _settled(path)
        file_hashes.file_sha256(path)
    file_hashes.forget(tmp_path / "a")
    reads.clear()
    file_hashes.file_sha256(kept)
    file_hashes.file_sha256(dropped)
    assert reads == [dropped.resolve()]


def test_without_a_writable_cache_every_check_reads_the_file(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("EDGE_ASKD_CACHE", str(blocker / "cache"))
    reads = _reads(monkeypatch)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    _settled(model)
    assert file_hashes.file_sha256(model) == file_hashes.file_sha256(model)
    assert len(reads) == 2
