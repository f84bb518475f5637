"""Checksummed downloads of Debian packages into the cache (PyPI sdists: `edge_askd.real_clips.fetch_sdist`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.paths import cache_root

from ..real_clips import _sha256


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def fetch_deb(pkg: DebPackage, downloads: Path | None = None) -> Path:
    """`apt-get download` one pinned .deb (no root, no install), verify its sha256, return its path."""
    downloads = downloads or cache_root() / "downloads"
    for existing in downloads.glob(f"{pkg.name}_*.deb"):
        if _sha256(existing) == pkg.sha256:
            return existing
    if shutil.which("apt-get") is None:
        raise EdgeAskdError(f"{pkg.spec}: apt-get not found; this set needs a Debian/Ubuntu machine")
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        proc = subprocess.run(["apt-get", "download", "-q", pkg.spec], cwd=tmp, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or not got:
            last = (proc.stderr.strip().splitlines() or ["no package"])[-1]
            raise EdgeAskdError(f"could not download {pkg.spec} ({last}); run `apt-get update` and check the network")
        digest = _sha256(got[0])
        if digest != pkg.sha256:
            raise EdgeAskdError(f"{got[0].name}: sha256 {digest[:16]} does not match the pinned {pkg.sha256[:16]}")
        target = downloads / got[0].name
        os.replace(got[0], target)
    return target


def unpack_deb(pkg: DebPackage, root: Path | None = None) -> Path:
    """Unpack a pinned .deb once into the cache; returns the package root (usr/... inside)."""
    root = root or cache_root()
    out = root / "debs" / f"{pkg.name}_{pkg.version}"
    if (out / ".complete").is_file():
        return out
    deb = fetch_deb(pkg, root / "downloads")
    if shutil.which("dpkg-deb") is None:
        raise EdgeAskdError(f"{deb}: dpkg-deb not found; install dpkg to unpack it")
    tmp = Path(tempfile.mkdtemp(dir=root / "downloads", prefix=f".{pkg.name}."))
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
        (tmp / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeAskdError(f"{deb}: dpkg-deb could not unpack it ({exc.stderr.decode().strip()[:200]})") from None
    return out
