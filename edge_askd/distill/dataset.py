"""Training data for distillation: manifest -> examples -> length-bucketed, resumable batches.

Each example gives the same waveform twice: the student's unpadded log-mel and the teacher's 30 s padded one
(`log_mel(pad_to_30s=...)`), plus decoder inputs / labels built from the reference text after the faster-whisper
prompt. The batch order is a pure function of (seed, epoch), so a position (epoch, batch index) is all a
checkpoint needs to resume the exact data order. Augmentation (`ClipAugment`) is a pure function of
(seed, epoch, clip index) for the same reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from edge_askd_runtime.audio import load_audio
from edge_askd_runtime.errors import EdgeAskdError
from edge_askd_runtime.features import SAMPLE_RATE, log_mel
from edge_askd_runtime.transcriber import MAX_CHUNK_SAMPLES

if TYPE_CHECKING:
    from edge_askd.data.augment import AugmentConfig
    from edge_askd.distill.config import DistillConfig

# The longest example: the runtime's chunk, so the student never trains on an input it will not see, and the tail
# margin still fits the 30 s positional table.
MAX_SAMPLES = MAX_CHUNK_SAMPLES
_FINAL_PUNCTUATION = tuple(".?!\"')…")


def teacher_style(text: str) -> str:
    """A reference in the style Whisper transcribes in: single spaces, a capital first letter, final punctuation.

    Synthetic sentences and some real prompts are lower-case without a period; the teacher's distribution says
    " The" and ends with "." before EOT, so an unstyled target makes CE and KD disagree on the first token and on
    the stop."""
    text = " ".join(text.split())
    if not text:
        return text
    if text[0].islower():
        text = text[0].upper() + text[1:]
    if not text.endswith(_FINAL_PUNCTUATION):
        text = re.sub(r"[,;:]+$", "", text) + "."
    return text


@dataclass(frozen=True)
class Clip:
    audio: Path
    text: str
    duration: float
    source: str = ""

    @property
    def synthetic(self) -> bool:
        """Made by a TTS engine (`edge-askd data synth` writes sources "synth:ENGINE")."""
        return self.source.startswith("synth")


def read_clips(
    manifest: str | Path,
    max_duration: float = 28.0,
    allow_empty_text: bool = False,
    text_field: str = "text",
    style: bool = False,
    untranscribed_field: str = "",
) -> list[Clip]:
    """The one place that reads manifests (swap the reader here). Clips over `max_duration` are skipped (the
    runtime's chunk is 28 s). `text_field` picks another column (e.g. teacher pseudo-labels) as the target;
    `untranscribed_field` is the column that clips without a reference take theirs from (untranscribed real
    speech: `edge-askd data pseudo-label` writes the teacher's transcript as `teacher_text`); `style` rewrites
    texts with `teacher_style`."""
    from edge_askd.data.manifest import read_manifest

    entries = read_manifest(manifest)
    if text_field != "text":
        lacking = [e.audio for e in entries if not isinstance(e.extra.get(text_field), str)]
        if lacking:
            raise EdgeAskdError(
                f"{manifest}: {len(lacking)} line(s) lack a text field {text_field!r} (first: {lacking[0]}); "
                'add it or set target_field = "text"'
            )
    texts = [e.text if text_field == "text" else e.extra[text_field] for e in entries]
    if untranscribed_field:
        texts = [
            t if t.strip() else str(e.extra.get(untranscribed_field) or "") for e, t in zip(entries, texts, strict=True)
        ]
    texts = [teacher_style(t) if style else " ".join(t.split()) for t in texts]
    clips = [
        Clip(e.audio_path(manifest), text, e.duration, e.source)
        for e, text in zip(entries, texts, strict=True)
        if e.duration <= max_duration and (allow_empty_text or text.strip())
    ]
    if not clips:
        raise EdgeAskdError(
            f"{manifest}: no usable clips (all longer than {max_duration} s or without text); check the manifest"
        )
    return clips


class TargetBuilder:
    """Reference text -> (decoder input, labels, loss mask). Loss positions: the text tokens and the final EOT,
    never the prompt (the prompt is given, not predicted)."""

    def __init__(self, tokenizer, prompt: list[int], eot: int, max_positions: int) -> None:
        self.tokenizer, self.prompt, self.eot = tokenizer, list(prompt), eot
        self.max_text = max_positions - len(prompt)

    def __call__(self, text: str) -> tuple[list[int], list[int], list[int]]:
        # Whisper transcripts start with a space token: " And so my fellow..."; runs of spaces would become a lone
        # space token the teacher never emits.
        ids = self.tokenizer(" " + " ".join(text.split()), add_special_tokens=False).input_ids[: self.max_text]
        seq = self.prompt + ids + [self.eot]
        dec_in, labels = seq[:-1], seq[1:]
        mask = [0] * (len(self.prompt) - 1) + [1] * (len(ids) + 1)
        return dec_in, labels, mask


class ClipAugment:
    """`edge_askd.data.augment.augment` seeded by (seed, epoch, clip index): the same clip in the same epoch is
    always augmented the same way, whatever ran before it (resume, other ranks, caching)."""

    def __init__(self, seed: int, p: float, config: AugmentConfig, noises: list[np.ndarray] = ()) -> None:
        if not 0.0 <= p <= 1.0:
            raise EdgeAskdError(f"augment_p {p} must be within [0, 1]")
        self.seed, self.p, self.config, self.noises = seed, p, config, list(noises)

    @classmethod
    def from_config(cls, cfg: DistillConfig) -> ClipAugment | None:
        """None when `cfg.augment` is off; loads the noise bank once when `augment_noise_dir` is set."""
        if not cfg.augment:
            return None
        from edge_askd.data.augment import AugmentConfig, load_noise_bank

        noises = load_noise_bank(cfg.augment_noise_dir) if cfg.augment_noise_dir else []
        config = AugmentConfig(p_real_noise=cfg.augment_real_noise_p, p_reverb=cfg.augment_p_reverb)
        return cls(cfg.seed, cfg.augment_p, config, noises)

    def __call__(self, audio: np.ndarray, epoch: int, index: int) -> np.ndarray:
        from edge_askd.data.augment import augment

        # SeedSequence mixes the three integers; seed % 2**64 keeps a negative config seed valid.
        rng = np.random.default_rng([self.seed % 2**64, epoch, index])
        if rng.random() >= self.p:
            return audio
        # Slowing a long example down would push its last words past the limit while they stay in the target.
        speeds = tuple(s for s in self.config.speeds if len(audio) / s <= MAX_SAMPLES)
        config = replace(self.config, speeds=speeds) if speeds else replace(self.config, p_speed=0.0)
        return augment(audio, rng, config, self.noises)


class ClipConcat:
    """Joins a training clip with 1..max_parts-1 random other clips (never itself, none twice), separated by
    silent pauses, into one example of at most 28 s, seeded by (seed, epoch, clip index) like ClipAugment so a
    resumed run replays it exactly."""

    def __init__(self, seed: int, p: float, max_parts: int = 3, max_gap_s: float = 1.2) -> None:
        self.seed, self.p, self.max_parts, self.max_gap_s = seed, p, max_parts, max_gap_s

    @classmethod
    def from_config(cls, cfg: DistillConfig) -> ClipConcat | None:
        return cls(cfg.seed, cfg.concat_p, cfg.concat_max, cfg.concat_gap_s) if cfg.concat_p > 0 else None

    def plan(self, index: int, epoch: int, n_clips: int) -> tuple[list[int], list[float]]:
        """(clip indices starting with `index`, pause seconds between them); just [index] when not joined."""
        rng = np.random.default_rng([self.seed % 2**64, epoch, index, 1])  # 1: a stream apart from ClipAugment's
        if n_clips < 2 or rng.random() >= self.p:
            return [index], []
        size = min(int(rng.integers(1, self.max_parts)), n_clips - 1)
        others = rng.choice(np.delete(np.arange(n_clips), index), size=size, replace=False)
        gaps = rng.uniform(0.2, self.max_gap_s, size=len(others))
        return [index, *(int(i) for i in others)], [float(g) for g in gaps]


class DistillDataset:
    def __init__(
        self,
        clips: list[Clip],
        targets: TargetBuilder,
        cache_audio: bool = True,
        augment: ClipAugment | None = None,
        concat: ClipConcat | None = None,
        tail_frames: int = 0,
        min_frames: int = 0,
    ) -> None:
        self.clips, self.targets, self.tail_frames, self.min_frames = clips, targets, tail_frames, min_frames
        self._audio: dict[int, np.ndarray] = {}
        self.cache_audio = cache_audio
        self.augment = augment  # applied only by example(index, epoch): dev, probes and the teacher cache stay clean
        self.concat = concat  # likewise only in example(index, epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def audio(self, index: int) -> np.ndarray:
        if index in self._audio:
            return self._audio[index]
        audio = load_audio(self.clips[index].audio)
        if self.cache_audio:
            self._audio[index] = audio
        return audio

    def parts(self, index: int, epoch: int) -> tuple[list[int], list[float]]:
        """The clips and pauses of example (index, epoch), decided from the manifest's durations (so the batcher
        knows every example's length without loading audio); parts that would pass 28 s are left out."""
        if self.concat is None:
            return [index], []
        indices, gaps = self.concat.plan(index, epoch, len(self))
        length = self.clips[index].duration
        for n, (i, gap) in enumerate(zip(indices[1:], gaps, strict=True)):
            if length + gap + self.clips[i].duration > MAX_SAMPLES / SAMPLE_RATE:
                return indices[: n + 1], gaps[:n]
            length += gap + self.clips[i].duration
        return indices, gaps

    def durations(self, epoch: int) -> list[float]:
        """Every example's length in seconds in this epoch (joined examples: parts plus pauses), for bucketing."""
        if self.concat is None:
            return [c.duration for c in self.clips]
        out = []
        for index in range(len(self)):
            indices, gaps = self.parts(index, epoch)
            out.append(sum(self.clips[i].duration for i in indices) + sum(gaps))
        return out

    def joined(self, index: int, epoch: int) -> tuple[np.ndarray, str]:
        """The example ClipConcat plans for (index, epoch): audio and text."""
        return self._join(*self.parts(index, epoch))

    def _join(self, indices: list[int], gaps: list[float]) -> tuple[np.ndarray, str]:
        index = indices[0]
        pieces, texts = [self.audio(index)], [self.clips[index].text]
        for i, gap in zip(indices[1:], gaps, strict=True):
            pieces += [np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32), self.audio(i)]
            texts.append(self.clips[i].text)
        return np.concatenate(pieces)[:MAX_SAMPLES], " ".join(texts)

    def __getitem__(self, index: int) -> dict:
        return self.example(index)

    def example(self, index: int, epoch: int | None = None) -> dict:
        """One training example; with an augmenter and an epoch, both mels come from the same augmented audio
        (the teacher hears what the student hears). The cached clean audio is never modified."""
        audio, text, parts = self.audio(index), self.clips[index].text, [index]
        if self.concat is not None and epoch is not None:
            parts, gaps = self.parts(index, epoch)  # planned once: the audio, the text and the CE flag share it
            audio, text = self._join(parts, gaps)
        if self.augment is not None and epoch is not None:
            audio = self.augment(audio, epoch, index)
        dec_in, labels, mask = self.targets(text)
        return {
            "index": index,
            "student_mel": torch.from_numpy(
                log_mel(audio, pad_to_30s=False, tail_frames=self.tail_frames, min_frames=self.min_frames)
            ),
            "audio_seconds": len(audio) / SAMPLE_RATE,
            "real": not any(self.clips[i].synthetic for i in parts),
            "teacher_mel": torch.from_numpy(log_mel(audio, pad_to_30s=True)),
            "dec_in": torch.tensor(dec_in),
            "labels": torch.tensor(labels),
            "mask": torch.tensor(mask),
        }


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on `device`."""
    return {k: v.to(device) for k, v in batch.items()}


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad mels (zeros) and token sequences (EOT, mask 0); `length_aware` masks the mel padding."""
    n = len(items)
    frames = torch.tensor([it["student_mel"].shape[1] for it in items])
    mel = torch.zeros(n, items[0]["student_mel"].shape[0], int(frames.max()))
    width = max(len(it["dec_in"]) for it in items)
    dec_in = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, it in enumerate(items):
        mel[i, :, : frames[i]] = it["student_mel"]
        k = len(it["dec_in"])
        dec_in[i, :k], labels[i, :k], mask[i, :k] = it["dec_in"], it["labels"], it["mask"]
    return {
        "index": torch.tensor([it["index"] for it in items]),
        "audio_seconds": torch.tensor([it["audio_seconds"] for it in items]),
        "real": torch.tensor([it["real"] for it in items]),
        "student_mel": mel,
        "frames": frames,
        "teacher_mel": torch.stack([it["teacher_mel"] for it in items]),
        "dec_in": dec_in,
        "labels": labels,
        "mask": mask,
    }


def epoch_batches(
    durations: list[float], batch_size: int, bucket_batches: int, seed: int, epoch: int
) -> list[list[int]]:
    """Length-bucketed batches for one epoch, a pure function of its arguments.

    Shuffle, cut into buckets of `bucket_batches * batch_size` clips, sort each bucket by duration (so a batch's
    clips have similar lengths: little padding), cut into batches, shuffle the batch order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(durations)))
    rng.shuffle(order)
    span = max(bucket_batches, 1) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: (durations[i], i))
        batches += [bucket[j : j + batch_size] for j in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class DataPosition:
    epoch: int = 0
    batch: int = 0  # index of the next batch in this epoch's list


class BatchStream:
    """Endless, resumable stream of index batches; with `world` processes each takes every world-th batch.

    durations: each example's length, or a function epoch -> lengths when examples change per epoch (joined
    clips): buckets must sort on the length the student sees, not the first clip's."""

    def __init__(
        self,
        durations: list[float] | Callable[[int], list[float]],
        batch_size: int,
        bucket_batches: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.durations_for = durations if callable(durations) else (lambda epoch, d=list(durations): d)
        self.batch_size, self.bucket_batches, self.seed = batch_size, bucket_batches, seed
        self.rank, self.world = rank, world
        self.position = DataPosition()
        self._cache: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._cache is None or self._cache[0] != epoch:
            durations = self.durations_for(epoch)
            self._cache = (epoch, epoch_batches(durations, self.batch_size, self.bucket_batches, self.seed, epoch))
        return self._cache[1]

    @property
    def batches_per_epoch(self) -> int:
        return len(self._epoch(0)) // self.world

    def next(self) -> list[int]:
        batches = self._epoch(self.position.epoch)
        if self.position.batch + self.world > len(batches):  # every rank must get a batch: drop the ragged tail
            self.position = DataPosition(self.position.epoch + 1, 0)
            batches = self._epoch(self.position.epoch)
        if self.world > len(batches):
            raise EdgeAskdError(f"{len(batches)} batches are fewer than the {self.world} processes; add clips")
        out = batches[self.position.batch + self.rank]
        self.position = DataPosition(self.position.epoch, self.position.batch + self.world)
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.position.epoch, "batch": self.position.batch}

    def load_state_dict(self, state: dict) -> None:
        self.position = DataPosition(int(state["epoch"]), int(state["batch"]))
