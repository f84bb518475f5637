"""What can be benchmarked, by spec string; each is built inside its own worker process.

pytorch:teacher:base          the PyTorch teacher via transformers (or pytorch:/path/to/checkpoint)
faster-whisper:base:int8      CTranslate2 on the same teacher weights (compute type int8 or float32)
runtime:/path/to/export       the edge-askd device runtime on an export directory (runtime:DIR:BACKEND)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_askd_runtime.errors import EdgeAskdError

KINDS = ("pytorch", "faster-whisper", "runtime")


@dataclass
class RunResult:
    text: str
    n_tokens: int
    total_s: float
    encoder_s: float | None = None
    # The log-mel front end (the runtime's also reads the audio), and the decoder's own time where the candidate
    # reports it; where it does not, the bench takes decode = total - encoder - front end.
    front_end_s: float | None = None
    decoder_s: float | None = None


class Candidate(Protocol):
    info: dict  # kind, model, backend, precision, size_bytes

    def transcribe(self, audio: np.ndarray) -> RunResult: ...


def _dir_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _torch_decoder_bytes(model) -> int:
    """The weights a Hugging Face Whisper decoder step reads: the decoder (the tied projection once), less the
    cross-attention K/V projections, whose outputs Transformers caches after the first step."""
    skip = {
        id(p)
        for layer in model.model.decoder.layers
        for m in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)
        for p in m.parameters()
    }
    params = {id(p): p for p in [*model.model.decoder.parameters(), *model.proj_out.parameters()]}
    return sum(p.numel() * p.element_size() for i, p in params.items() if i not in skip)


class PyTorchCandidate:
    def __init__(self, model: str, threads: int) -> None:
        import torch

        from edge_askd.hf_transcriber import HFTranscriber

        torch.set_num_threads(threads)
        self._torch = torch
        self.transcriber = HFTranscriber(model, threads=threads)
        ckpt = self.transcriber.checkpoint
        self.info = {
            "kind": "pytorch",
            "model": model,
            "backend": f"torch {torch.__version__}",
            "precision": "fp32",
            "size_bytes": _dir_size(list(ckpt.glob("*.safetensors"))),
            "decoder_bytes": _torch_decoder_bytes(self.transcriber.model),
        }

    def transcribe(self, audio: np.ndarray) -> RunResult:
        from edge_askd_runtime.features import log_mel

        mel = self._torch.from_numpy(log_mel(audio[: 30 * 16000], pad_to_30s=True))[None]
        t0 = time.perf_counter()
        with self._torch.inference_mode():
            self.transcriber.model.model.encoder(mel)
        encoder_s = time.perf_counter() - t0
        result = self.transcriber.transcribe(audio)
        return RunResult(
            result.text, len(result.tokens), result.timings["total"], encoder_s, front_end_s=result.timings["features"]
        )


class FasterWhisperCandidate:
    def __init__(self, model: str, compute_type: str, threads: int) -> None:
        from faster_whisper import WhisperModel

        from edge_askd.teacher.convert import _module_dir, locate_model_parts, teacher_package

        pkg = teacher_package(model)
        parts = locate_model_parts(pkg)
        assets = _module_dir(pkg.assets[0], pkg) / pkg.assets[1]
        files = {"model.bin": b"".join(p.read_bytes() for p in parts)}
        for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
            files[name] = (assets / name).read_bytes()
        self.model = WhisperModel(pkg.name, device="cpu", compute_type=compute_type, cpu_threads=threads, files=files)
        self.language = "en" if self.model.model.is_multilingual else None
        self.info = {
            "kind": "faster-whisper",
            "model": f"teacher:{pkg.name}",
            "backend": "ctranslate2",
            "precision": compute_type,
            "size_bytes": _dir_size(parts),
        }

    def transcribe(self, audio: np.ndarray) -> RunResult:
        import ctranslate2

        from edge_askd_runtime.features import log_mel

        mel = np.ascontiguousarray(log_mel(audio[: 30 * 16000], pad_to_30s=True)[None])
        t0 = time.perf_counter()
        self.model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
        encoder_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.model.feature_extractor(audio)  # what transcribe computes first, timed apart as the encoder is
        front_end_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        segments, _ = self.model.transcribe(
            audio,
            beam_size=1,
            language=self.language,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        segments = list(segments)
        total_s = time.perf_counter() - t0
        text = " ".join(s.text.strip() for s in segments)
        return RunResult(text, sum(len(s.tokens) for s in segments), total_s, encoder_s, front_end_s=front_end_s)


class RuntimeCandidate:
    def __init__(
        self, export_dir: str, backend: str, precision: str | None, threads: int, device: str = "auto"
    ) -> None:
        from edge_askd_runtime.transcriber import Transcriber

        self.transcriber = Transcriber(export_dir, backend=backend, precision=precision, threads=threads, device=device)
        self.info = {"kind": "runtime", "model": export_dir, **self.transcriber.describe()}

    def transcribe(self, audio: np.ndarray) -> RunResult:
        result = self.transcriber.transcribe(audio)
        t = result.timings
        return RunResult(
            result.text,
            len(result.tokens),
            t["total"],
            t.get("encode"),
            front_end_s=t["load_audio"] + t["features"],
            decoder_s=t["decode"],
        )


def runtime_candidates(export_dir: str | Path, device: str = "auto") -> list[str]:
    """One candidate per valid artifact of an export directory whose runtime is installed here
    ("runtime:DIR:BACKEND:PRECISION", plus ":DEVICE" unless auto)."""
    from edge_askd_runtime.backends import FORMAT_BACKENDS, runtime_available
    from edge_askd_runtime.transcriber import read_manifest

    variants = [v for v in read_manifest(export_dir)["variants"] if v.get("valid") and runtime_available(v["format"])]
    suffix = "" if device == "auto" else f":{device}"
    return [f"runtime:{export_dir}:{FORMAT_BACKENDS[v['format']]}:{v['precision']}{suffix}" for v in variants]


def parse_runtime_candidate(spec: str) -> tuple[str, str | None, str | None, str | None]:
    """ "runtime:DIR[:BACKEND[:PRECISION[:DEVICE]]]" -> (DIR, BACKEND, PRECISION, DEVICE), None where absent."""
    path, backend, precision, device = (spec.split(":", 1)[1].split(":") + ["", "", ""])[:4]
    return path, backend or None, precision or None, device or None


def build_candidate(spec: str, threads: int) -> Candidate:
    kind, _, rest = spec.partition(":")
    if kind == "pytorch" and rest:
        return PyTorchCandidate(rest, threads)
    if kind == "faster-whisper" and rest:
        model, _, compute_type = rest.partition(":")
        return FasterWhisperCandidate(model, compute_type or "int8", threads)
    if kind == "runtime" and rest:
        path, backend, precision, device = parse_runtime_candidate(spec)
        return RuntimeCandidate(path, backend or "auto", precision, threads, device or "auto")
    raise EdgeAskdError(
        f"unknown benchmark candidate {spec!r}; use pytorch:teacher:base, faster-whisper:base:int8 or runtime:DIR"
    )
