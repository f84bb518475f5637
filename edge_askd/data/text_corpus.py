"""English sentences for synthetic speech, from text that installs offline from Debian, deduplicated against
every evaluation transcript.

Sources (Debian packages, read from /usr/share once installed):
  * wordnet-base: the usage examples in WordNet 3.0's glosses (~48k, many are full read-style sentences);
  * fortunes, fortunes-min: quotations, jokes and dialogue;
  * templates here: spoken commands, numbers, times, dates, money, names (what a voice assistant hears).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_json
from edge_askd_runtime.errors import EdgeAskdError

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
APT_PACKAGES = ("wordnet-base", "fortunes", "fortunes-min")

# Letters, digits and light punctuation only: what every TTS engine reads without spelling symbols out.
_CLEAN = re.compile(r"^[A-Za-z][A-Za-z0-9 ,.;:'?!$%-]*$")


@dataclass(frozen=True)
class CorpusConfig:
    min_words: int = 3
    max_words: int = 30
    templates: int = 8000  # template sentences (commands, numbers, dates, names)
    seed: int = 0


def _tidy(s: str) -> str | None:
    s = re.sub(r"\s+", " ", s.replace("`", "'")).strip(" \"'-")
    s = s.replace("--", ", ")
    return s if _CLEAN.match(s) else None


def wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise EdgeAskdError(f"{path}: not found; install it with `apt-get install wordnet-base`")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            out += re.findall(r'"([^"]+)"', line.split("|", 1)[1])
    return out


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    if not root.is_dir():
        raise EdgeAskdError(f"{root}: not found; install it with `apt-get install fortunes fortunes-min`")
    out = []
    for path in sorted(root.iterdir()):
        if path.suffix or not path.is_file():
            continue  # .dat indexes and .u8 copies
        for cookie in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            if re.search(r"^\s*--|^\s*\w+:\s", cookie, re.M) and "\n" in cookie.strip():
                cookie = re.sub(r"^\s*--.*$", "", cookie, flags=re.M)  # drop attributions
            text = " ".join(cookie.split())
            out += re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
    return out


_NAMES = (
    "Alice Amir Ana Ben Carlos Chen Chloe David Elena Emma Fatima Grace Hannah Hiro Isaac Jack James Jamal Julia "
    "Kate Kofi Laura Leo Liam Lucia Maria Mark Maya Mei Mohammed Nadia Noah Olga Omar Paul Priya Rachel Raj Rosa "
    "Sam Sara Sofia Tom Tariq Victor Wei Yusuf Zoe"
).split()
_PLACES = (
    "London Paris Berlin Madrid Boston Chicago Denver Seattle Toronto Dublin Lagos Nairobi Mumbai Tokyo Sydney "
    "Lisbon Oslo Prague Vienna Rome Cairo Lima Austin Portland"
).split()
_MONTHS = "January February March April May June July August September October November December".split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_ROOMS = "kitchen bedroom living room hallway garage office bathroom garden".split(" ")
_TEMPLATES = (
    "Set a timer for {n} minutes.",
    "Wake me up at {h}:{mm} tomorrow.",
    "Call {name} on {day} afternoon.",
    "Send a message to {name} saying I will be {n} minutes late.",
    "Turn {onoff} the lights in the {room}.",
    "Set the temperature to {t} degrees.",
    "What is the weather like in {place} on {day}?",
    "Remind me to call {name} on {month} {d}.",
    "The meeting with {name} is on {day}, {month} {d}, {y}.",
    "My flight to {place} leaves at {h}:{mm} from gate {n}.",
    "The total comes to {n} dollars and {c} cents.",
    "Please transfer {n} dollars to {name}.",
    "{name} was born on {month} {d}, {y} in {place}.",
    "Play the next song and turn the volume up to {p} percent.",
    "How far is it from {place} to {place2}?",
    "Add {n} eggs and {n2} apples to my shopping list.",
    "Call {name} at {phone}.",
    "{name} said, are you coming to {place} with us on {day}?",
    "I told {name} that the train to {place} was {n} minutes late.",
    "Room {n} is on floor {n2}, next to the {room}.",
    "Stop the alarm.",
    "Cancel my {h} o'clock appointment with {name}.",
)


def template_sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        template = rng.choice(_TEMPLATES)
        place, place2 = rng.sample(_PLACES, 2)
        out.append(
            template.format(
                name=rng.choice(_NAMES),
                place=place,
                place2=place2,
                day=rng.choice(_DAYS),
                month=rng.choice(_MONTHS),
                room=rng.choice(_ROOMS),
                onoff=rng.choice(["on", "off"]),
                d=rng.randint(1, 28),
                y=rng.randint(1950, 2030),
                h=rng.randint(1, 12),
                mm=f"{rng.choice([0, 5, 15, 20, 30, 45, 50]):02d}",
                n=rng.randint(2, 250),
                n2=rng.randint(2, 12),
                c=rng.randint(1, 99),
                t=rng.randint(16, 28),
                p=rng.choice([20, 30, 40, 50, 60, 75, 80]),
                phone=" ".join(str(rng.randint(0, 9)) for _ in range(7)),
            )
        )
    return out


def dedupe(sentences: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    return dedupe_with_keys(sentences, exclude)[0]


def dedupe_with_keys(sentences: Iterable[str], exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(sentences, their normalised keys): the first occurrence of each sentence by Whisper-normalised text,
    minus any equal to an excluded one (evaluation transcripts) or containing a longer (>= 4 word) one."""
    from edge_askd_runtime.scoring import normalise

    banned = {normalise(t) for t in exclude}
    banned.discard("")
    long_banned = [b for b in banned if len(b.split()) >= 4]
    seen: set[str] = set()
    out, keys = [], []
    for s in sentences:
        key = normalise(s)
        if not key or key in seen or key in banned:
            continue
        padded = f" {key} "
        if any(f" {b} " in padded for b in long_banned):
            continue
        seen.add(key)
        out.append(s)
        keys.append(key)
    return out, keys


def build_sentences(config: CorpusConfig | None = None, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Deterministic, deduplicated sentences (WordNet examples, fortunes, templates), eval text removed, with
    their Whisper-normalised keys."""
    cfg = config or CorpusConfig()
    raw = wordnet_examples() + fortune_sentences() + template_sentences(cfg.templates, cfg.seed)
    kept = []
    for s in raw:
        t = _tidy(s)
        if t and cfg.min_words <= len(t.split()) <= cfg.max_words:
            kept.append(t)
    return dedupe_with_keys(kept, exclude)


def vocabulary(sentences: Iterable[str]) -> set[str]:
    from edge_askd_runtime.scoring import normalise

    return {w for s in sentences for w in normalise(s).split()}


_CACHE_FORMAT = 2  # bump when the corpus sources or filters change, so stale caches are rebuilt


def cached_sentences(config: CorpusConfig | None = None, exclude: Iterable[str] = ()) -> list[str]:
    return cached_corpus(config, exclude)[0]


def cached_corpus(config: CorpusConfig | None = None, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """`build_sentences`, cached in <cache>/text/ keyed by the config and the excluded texts: normalising ~70k
    sentences with Whisper's normaliser takes ~20 s, too long to repeat for every synth run."""
    import hashlib
    import json

    from edge_askd_runtime.paths import cache_root
    from edge_askd_runtime.scoring import NORMALISER_VERSION

    cfg = config or CorpusConfig()
    exclude = sorted(set(exclude))
    parts = [_CACHE_FORMAT, NORMALISER_VERSION, repr(cfg), exclude]  # the keys are normalise()'s output
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    path = cache_root() / "text" / f"sentences-{key}.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("format") == _CACHE_FORMAT:
            return data["sentences"], data["keys"]
    sentences, keys = build_sentences(cfg, exclude)
    atomic_write_json(path, {"format": _CACHE_FORMAT, "sentences": sentences, "keys": keys}, indent=None)
    return sentences, keys
