"""Transcription with a PyTorch Whisper checkpoint (a teacher or a trained student), greedy decoding.

The reference every export and runtime is compared with; also the "PyTorch teacher" peer in benchmarks.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_askd_runtime.audio import SAMPLE_RATE, load_audio
from edge_askd_runtime.errors import ModelError
from edge_askd_runtime.features import log_mel
from edge_askd_runtime.results import Segment, Transcription
from edge_askd_runtime.stream import StreamConfig, TranscriptionStream
from edge_askd_runtime.transcriber import speech_chunks

from .teacher import materialise_teacher


def resolve_checkpoint(model: str) -> Path:
    """`teacher:NAME` -> converted teacher directory; otherwise a local Hugging Face checkpoint directory."""
    if model.startswith("teacher:"):
        return materialise_teacher(model)
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{model}: not a model; pass teacher:tiny.en, teacher:base or a checkpoint directory with config.json"
        )
    return path


class HFTranscriber:
    """`HFTranscriber("teacher:base").transcribe("clip.wav")` -> Transcription."""

    def __init__(self, model: str = "teacher:base", threads: int | None = None, language: str = "en") -> None:
        import torch
        from transformers import AutoTokenizer, WhisperForConditionalGeneration

        from .distill.student import is_unpadded, min_frames, tail_frames

        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        self.checkpoint = resolve_checkpoint(model)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.checkpoint, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.checkpoint)
        self.language = language if self.model.generation_config.is_multilingual else None
        # Distilled students (edge_askd.distill.student) take the unpadded mel through the length-aware encoder.
        self.unpadded = is_unpadded(self.model.config)
        self.tail_frames = tail_frames(self.model.config)
        self.min_frames = min_frames(self.model.config)
        self.load_seconds = time.perf_counter() - start

    def generate_kwargs(self) -> dict:
        return {"language": self.language, "task": "transcribe"} if self.language else {}

    def prompt_ids(self) -> list[int]:
        """The decoder prompt greedy decoding starts from, as faster-whisper builds it."""
        from .distill.student import prompt_ids

        return prompt_ids(self.model.generation_config, self.language)

    def stream(self, config: StreamConfig | None = None) -> TranscriptionStream:
        """A push-audio stream over this model, as `Transcriber.stream` (edge_askd_runtime.stream)."""
        return TranscriptionStream(self.transcribe, config)

    def transcribe(self, audio: str | Path | np.ndarray) -> Transcription:
        import torch

        t0 = time.perf_counter()
        samples = load_audio(audio) if not isinstance(audio, np.ndarray) else audio.astype(np.float32)
        t1 = time.perf_counter()
        tokens: list[int] = []
        segments: list[Segment] = []
        features_s = 0.0
        # Audio longer than one 30 s window is cut at pauses, as the device runtime does.
        for piece in speech_chunks(samples):
            f0 = time.perf_counter()
            chunk = piece.audio
            mel = log_mel(chunk, not self.unpadded, tail_frames=self.tail_frames, min_frames=self.min_frames)
            mel = torch.from_numpy(mel)
            features_s += time.perf_counter() - f0
            if self.unpadded:
                from .distill.student import greedy_decode

                ids = greedy_decode(self.model, mel, self.prompt_ids())
            else:
                with torch.inference_mode():
                    out = self.model.generate(mel[None], **self.generate_kwargs())
                ids = [int(t) for t in out[0] if int(t) < self.model.generation_config.eos_token_id]
            tokens += ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            if text:
                segments.append(piece.segment(text, ids))
        total = time.perf_counter() - t0
        return Transcription(
            text=" ".join(s.text for s in segments),
            tokens=tokens,
            audio_seconds=len(samples) / SAMPLE_RATE,
            language=self.language,
            timings={"load_audio": t1 - t0, "features": features_s, "total": total},
            segments=segments,
        )
