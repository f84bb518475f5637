"""Teacher pseudo-labels (`edge-askd data pseudo-label`): transcribe a manifest with a Whisper teacher, store
the transcript and its WER against the reference, and keep only clips under a WER threshold.

The filter follows Distil-Whisper (Gandhi et al. 2023): pseudo-labels whose normalised WER against the
ground truth exceeds 10% are dropped, which removes TTS mispronunciations and teacher hallucinations alike.
Progress is appended to `<output>.progress` line by line, so an interrupted run resumes where it stopped;
the output manifests are written atomically at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError

from .manifest import ManifestEntry, read_manifest, write_manifest


@dataclass(frozen=True)
class PseudoLabelConfig:
    model: str = "teacher:base"
    max_wer: float = 0.10
    threads: int | None = None
    limit: int | None = None  # label only the first N clips (quick checks)
    batch_size: int = 8


@dataclass(frozen=True)
class PseudoLabelReport:
    labelled: Path  # every clip with teacher_text and teacher_wer
    kept: Path  # clips within max_wer (text stays the reference; teacher_text is the distillation target)
    total: int
    kept_count: int
    corpus_wer: float

    @property
    def kept_fraction(self) -> float:
        return self.kept_count / self.total if self.total else 0.0


def _key(entry: ManifestEntry, manifest: Path) -> str:
    # The audio path alone is not unique: one recording may appear with two references.
    return f"{entry.audio_path(manifest)}\t{entry.text}"


def _clip_wer(reference: str, hypothesis: str) -> float:
    from edge_askd_runtime.scoring import normalise, wer

    if not normalise(reference).strip():
        # Probes: a correct transcript of a non-speech clip is empty; any word at all is a hallucination.
        return 0.0 if not normalise(hypothesis).strip() else 1.0
    return wer([reference], [hypothesis])


def transcribe_batch(teacher, paths: list[Path]) -> list[str]:
    """Greedy transcripts of several clips in one generate call (clips over 30 s go through the long-form path)."""
    import numpy as np
    import torch

    from edge_askd_runtime.audio import load_audio
    from edge_askd_runtime.features import N_SAMPLES_30S, log_mel

    audios = [load_audio(p) for p in paths]
    short = [i for i, a in enumerate(audios) if len(a) <= N_SAMPLES_30S]
    texts = [""] * len(paths)
    if short:
        mels = torch.from_numpy(np.stack([log_mel(audios[i], pad_to_30s=True) for i in short]))
        with torch.inference_mode():
            out = teacher.model.generate(mels, **teacher.generate_kwargs())
        eos = teacher.model.generation_config.eos_token_id
        for i, ids in zip(short, out, strict=True):
            # As HFTranscriber: drop everything from end-of-text on (batch padding, special tokens).
            texts[i] = teacher.tokenizer.decode([int(t) for t in ids if int(t) < eos], skip_special_tokens=True).strip()
    for i, audio in enumerate(audios):
        if i not in short:
            texts[i] = teacher.transcribe(audio).text
    return texts


def pseudo_label(
    manifest: Path, output: Path, config: PseudoLabelConfig | None = None, progress: bool = True
) -> PseudoLabelReport:
    """Label `manifest` into `output` (all clips) and `output` with `.kept` before the suffix (filtered)."""
    cfg = config or PseudoLabelConfig()
    entries = read_manifest(manifest)[: cfg.limit] if cfg.limit else read_manifest(manifest)
    # Kept after success too: re-running a finished job costs nothing.
    partial = output.with_name(output.name + ".progress")
    done: dict[str, dict] = {}
    if partial.is_file():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write: that clip is labelled again
            done[row["key"]] = row
    todo = [e for e in entries if _key(e, manifest) not in done]
    if todo:
        from tqdm import tqdm

        from ..hf_transcriber import HFTranscriber

        teacher = HFTranscriber(cfg.model, threads=cfg.threads)
        output.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo), desc=f"pseudo-label {cfg.model}", unit="clip", disable=not progress)
        with partial.open("a", encoding="utf-8") as log:
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                paths = [e.audio_path(manifest) for e in batch]
                for entry, text in zip(batch, transcribe_batch(teacher, paths), strict=True):
                    row = {
                        "key": _key(entry, manifest),
                        "teacher_text": text,
                        "teacher_wer": round(_clip_wer(entry.text, text), 4),
                    }
                    log.write(json.dumps(row, ensure_ascii=False) + "\n")
                    done[row["key"]] = row
                log.flush()
                bar.update(len(batch))
        bar.close()
    labelled, kept = [], []
    for entry in entries:
        row = done[_key(entry, manifest)]
        # Absolute audio paths: the labelled manifest may live in another folder than the audio.
        base = ManifestEntry(
            str(entry.audio_path(manifest)),
            entry.text,
            entry.duration,
            entry.language,
            entry.source,
            entry.split,
            entry.speaker,
            {
                **entry.extra,
                "teacher": cfg.model,
                "teacher_text": row["teacher_text"],
                "teacher_wer": row["teacher_wer"],
            },
        )
        labelled.append(base)
        if row["teacher_wer"] <= cfg.max_wer:
            kept.append(base)
    if not entries:
        raise EdgeAskdError(f"{manifest}: no clips to label")
    from edge_askd_runtime.scoring import wer

    refs = [e.text for e in labelled if e.text.strip()]
    hyps = [e.extra["teacher_text"] for e in labelled if e.text.strip()]
    corpus = wer(refs, hyps) if refs else 0.0
    kept_path = output.with_name(output.stem + ".kept" + output.suffix)
    write_manifest(output, labelled)
    write_manifest(kept_path, kept)
    return PseudoLabelReport(output, kept_path, len(entries), len(kept), corpus)
