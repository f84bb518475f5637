"""`Transcriber(export_dir).transcribe("clip.wav")`: torch-free transcription from an export's manifest.

Loading reads `manifest.json`, picks a variant (format + precision) whose runtime is installed, verifies the
sha256 of every file it will use and refuses a mismatch, then drives the shared greedy loop in `decoding.py`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, stream_audio
from .backends import BACKEND_FORMATS, BackendSpec, load_backend, resolve_device, runtime_available
from .decoding import DecodeSettings, SilenceGate, allocate_cache, decoder_call, greedy_decode
from .errors import ModelError
from .features import HOP_LENGTH, N_SAMPLES_30S, log_mel, with_tail
from .file_hashes import file_sha256, sha256_file
from .results import Segment, Transcription
from .stream import StreamConfig, TranscriptionStream
from .tokenizer import Detokenizer
from .vad import speech_segments
from .versions import runtime_version, version_tuple
from .vocab import VocabMap

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_GATE = SilenceGate()


def read_manifest(export_dir: str | Path) -> dict:
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{export_dir}: no {MANIFEST}; create it with `edge-askd export CHECKPOINT --out DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{path}: corrupt manifest ({exc}); re-run edge-askd export") from None
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ModelError(
            f"{path}: manifest version {manifest.get('manifest_version')} is not {MANIFEST_VERSION}; re-export"
        )
    return manifest


def verify_file(export_dir: Path, rel: str, manifest: dict) -> Path:
    """The path of `rel` after checking size and sha256 against the manifest; one-line ModelError otherwise. The
    digest is read again only where the file changed since it was last hashed (`file_hashes`)."""
    entry = manifest["files"].get(rel)
    path = export_dir / rel
    if entry is None:
        raise ModelError(f"{path}: not listed in {MANIFEST}; re-run edge-askd export")
    if not path.is_file():
        raise ModelError(f"{path}: missing; copy the whole export directory or re-run edge-askd export")
    if path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
        raise ModelError(f"{path}: sha256 does not match {MANIFEST} (corrupt or replaced); re-copy or re-export it")
    return path


def choose_variant(manifest: dict, backend: str, precision: str | None) -> dict:
    """First valid variant (manifest order = the target's preference) matching backend/precision and installed."""
    if backend != "auto" and backend not in BACKEND_FORMATS:
        raise ModelError(f"unknown backend {backend!r}; known: auto, {', '.join(BACKEND_FORMATS)}")
    candidates = [v for v in manifest["variants"] if v.get("valid")]
    if backend != "auto":
        candidates = [v for v in candidates if v["format"] == BACKEND_FORMATS[backend]]
    if precision:
        candidates = [v for v in candidates if v["precision"] == precision]
    if not candidates:
        have = ", ".join(f"{v['format']}/{v['precision']}" for v in manifest["variants"] if v.get("valid")) or "none"
        raise ModelError(f"export has no valid {backend}/{precision or 'any'} variant (valid: {have}); re-export")
    for variant in candidates:
        if runtime_available(variant["format"]):
            return variant
    formats = sorted({v["format"] for v in candidates})
    packages = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "ai-edge-litert"}
    raise ModelError(f"no runtime installed for {', '.join(formats)}; run: pip install {packages[formats[0]]}")


def variant_files(variant: dict) -> list[str]:
    """Every file a variant needs (graphs, OpenVINO .bin weights, the TFLite file), relative to the export.

    TFLite exports hold every bucket as signatures of `files["model"]`; exports from before that list one
    encoder/decoder file pair per bucket under `files["buckets"]`, which still load.
    """
    files = variant["files"]
    rels = [rel for key, rel in files.items() if key != "buckets"]
    for pair in (files.get("buckets") or {}).values():
        rels += list(pair.values())
    return rels


def check_min_runtime(export_dir: Path, variant: dict) -> None:
    """One line naming the upgrade when the installed runtime is older than the variant needs (exports from
    before `min_runtime` was recorded carry none and are not checked)."""
    need = variant.get("min_runtime")
    if not need:
        return
    have = runtime_version(need["package"])
    if have is not None and version_tuple(have) < version_tuple(need["version"]):
        raise ModelError(
            f"{export_dir}: variant {variant['name']} needs {need['package']} >= {need['version']} "
            f"({need['why']}), this one is {have}; upgrade: pip install -U '{need['package']}>={need['version']}'"
        )


def backend_spec(
    export_dir: Path,
    manifest: dict,
    variant: dict,
    threads: int | None = None,
    device: str = "CPU",
    precision_hint: str | None = None,
) -> BackendSpec:
    """Everything an adapter needs to load `variant`, with each file's hash verified.

    precision_hint: None takes the variant's own (`runtime.precision_hint`, set by the export's parity gate when
    the plugin's default precision failed it), else the plugin's default.
    """
    check_min_runtime(export_dir, variant)
    precision_hint = precision_hint or (variant.get("runtime") or {}).get("precision_hint")
    files = variant["files"]
    io = variant["io"]
    # All of them, including weights the graph file only refers to; each hashed once.
    verified = {rel: verify_file(export_dir, rel, manifest) for rel in variant_files(variant)}
    bucket_files = {
        int(frames): (verified[pair["encoder"]], verified[pair["decoder"]])
        for frames, pair in (files.get("buckets") or {}).items()
    }
    signatures = variant.get("signatures") or {}
    for frames in signatures:  # one multi-signature file serves every bucket
        bucket_files[int(frames)] = (verified[files["model"]], verified[files["model"]])
    return BackendSpec(
        encoder=verified[files["encoder"]] if "encoder" in files else Path(),
        decoder=verified[files["decoder"]] if "decoder" in files else Path(),
        encoder_inputs=io["encoder_inputs"],
        encoder_outputs=io["encoder_outputs"],
        decoder_inputs=io["decoder_inputs"],
        decoder_outputs=io["decoder_outputs"],
        threads=threads,
        multi_token=bool(io.get("multi_token")),
        every_position_logits=bool(io.get("every_position_logits")),
        dynamic_cache=bool(io.get("dynamic_cache")),
        cache_in_graph=bool(io.get("cache_in_graph")),
        device=device,
        precision_hint=precision_hint,
        buckets=sorted(int(b) for b in variant.get("buckets") or []),
        bucket_files=bucket_files,
        bucket_signatures={int(frames): (names["encoder"], names["decoder"]) for frames, names in signatures.items()},
    )


def decode_settings(manifest: dict, language: str | None = None, task: str | None = None) -> DecodeSettings:
    """The decoding settings, with the prompt built for `language`/`task` when the export is multilingual
    (<|sot|> <|lang|> <|task|> <|notimestamps|>); None keeps the export's own (English, transcribe)."""
    tok = manifest["tokenizer"]
    gen = manifest["generation"]
    return DecodeSettings(
        prompt=tuple(build_prompt(manifest, language, task)) if language or task else tuple(tok["prompt"]),
        eos=tok["eos"],
        suppress_tokens=tuple(gen["suppress_tokens"]),
        begin_suppress_tokens=tuple(gen["begin_suppress_tokens"]),
        max_target_positions=gen["max_target_positions"],
    )


def build_prompt(manifest: dict, language: str | None, task: str | None) -> list[int]:
    tok = manifest["tokenizer"]
    lang_to_id, task_to_id = tok.get("lang_to_id") or {}, tok.get("task_to_id") or {}
    language, task = language or tok.get("language") or "en", task or "transcribe"
    if not lang_to_id:  # an English-only model (tiny.en): its prompt has no language or task token
        if language != "en" or task != "transcribe":
            raise ModelError(
                f"this export is English-only: language={language!r}, task={task!r} is not available; "
                "export a multilingual teacher (base) for other languages or translation"
            )
        return list(tok["prompt"])
    if f"<|{language}|>" not in lang_to_id:
        known = ", ".join(sorted(k.strip("<|>") for k in lang_to_id))
        raise ModelError(f"unknown language {language!r} for this export; known: {known}")
    if task not in task_to_id:
        raise ModelError(f"unknown task {task!r}; use one of {', '.join(sorted(task_to_id))}")
    return [tok["sot"], lang_to_id[f"<|{language}|>"], task_to_id[task], tok["no_timestamps"]]


def load_vocab(export_dir: Path, manifest: dict) -> VocabMap:
    """The export's graph-id map: a shortlisted vocabulary (hash-verified) or the identity."""
    shortlist = manifest["tokenizer"].get("shortlist")
    if not shortlist:
        return VocabMap()
    vocab = VocabMap.from_file(verify_file(export_dir, shortlist["file"], manifest))
    if vocab.size != shortlist["size"]:
        raise ModelError(f"{export_dir / shortlist['file']}: {vocab.size} ids, the manifest says {shortlist['size']}")
    return vocab


def model_mel(
    audio: np.ndarray, padded_30s: bool, n_mels: int, buckets: list[int], tail_frames: int = 0, min_frames: int = 0
) -> np.ndarray:
    """The model's [1, n_mels, T] input for <= 30 s of audio.

    padded_30s: the teacher convention (waveform zero-padded to 30 s). Otherwise the student's unpadded mel with
    its tail margin (`features.with_tail`), or for static-shape encoders (TFLite buckets) that waveform
    zero-padded (never the mel) to the smallest bucket.
    """
    if not padded_30s:
        audio = with_tail(audio, tail_frames, min_frames)
    if buckets and not padded_30s:
        frames = len(audio) // HOP_LENGTH
        bucket = next((b for b in sorted(buckets) if b >= frames), max(buckets))
        audio = np.pad(audio, (0, max(0, bucket * HOP_LENGTH - len(audio))))[: bucket * HOP_LENGTH]
    return log_mel(audio, pad_to_30s=padded_30s, n_mels=n_mels)[None]


@dataclass(frozen=True)
class Chunk:
    start: float  # seconds into the original audio
    audio: np.ndarray
    # True when the chunk was cut from the VAD's speech regions, so its bounds already are the speech's bounds.
    trimmed: bool = False

    @property
    def end(self) -> float:
        return self.start + len(self.audio) / SAMPLE_RATE

    def speech_span(self) -> tuple[float, float]:
        """(start, end) seconds of the speech in this chunk, in the original audio; the whole chunk if the VAD
        finds none (a short word can still produce text)."""
        if self.trimmed:
            return self.start, self.end
        regions = speech_segments(self.audio)
        if not regions:
            return self.start, self.end
        return self.start + regions[0][0] / SAMPLE_RATE, self.start + regions[-1][1] / SAMPLE_RATE

    def segment(self, text: str, tokens: list[int]) -> Segment:
        start, end = self.speech_span()
        return Segment(start=round(start, 3), end=round(end, 3), text=text, tokens=list(tokens))


MAX_CHUNK_SAMPLES = 28 * SAMPLE_RATE


def speech_chunks(audio: np.ndarray) -> list[Chunk]:
    """Audio that fits one 30 s window stays whole; longer audio is cut at pauses found by the energy VAD (never
    mid-word, unlike fixed windows, which made a sentence cut at a boundary come out twice)."""
    if len(audio) <= N_SAMPLES_30S:
        return [Chunk(0.0, audio)]
    return [Chunk(start / SAMPLE_RATE, audio[start:end], trimmed=True) for start, end in _merged_spans(audio)]


def _merged_spans(audio: np.ndarray) -> list[list[int]]:
    # Merge consecutive speech regions into chunks of up to 28 s: each chunk costs one encoder pass (a full 30 s
    # one for a teacher), so phrase-sized chunks would multiply the work.
    spans: list[list[int]] = []
    for start, end in speech_segments(audio):
        if spans and end - spans[-1][0] <= MAX_CHUNK_SAMPLES:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return spans


STREAM_WINDOW_SAMPLES = 120 * SAMPLE_RATE


def stream_chunks(blocks: Iterable[np.ndarray], window: int = STREAM_WINDOW_SAMPLES) -> Iterator[Chunk]:
    """speech_chunks over audio arriving in blocks, holding at most about `window` samples: once the buffer is
    that long, every chunk but the last (which may go on in the next block) is emitted and the buffer cut at the
    last one's start. Audio that fits one window gives exactly speech_chunks' chunks."""
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # samples of the stream before buffer[0]
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        if len(buffer) < window:
            continue
        spans = _merged_spans(buffer)
        for start, end in spans[:-1]:
            yield Chunk((offset + start) / SAMPLE_RATE, buffer[start:end].copy(), trimmed=True)
        # No speech at all: keep a second, so a word starting at the cut is not lost.
        cut = spans[-1][0] if spans else max(0, len(buffer) - SAMPLE_RATE)
        buffer, offset = buffer[cut:].copy(), offset + cut
    if offset == 0:
        yield from speech_chunks(buffer)
        return
    for start, end in _merged_spans(buffer):
        yield Chunk((offset + start) / SAMPLE_RATE, buffer[start:end], trimmed=True)


def _note(message: str) -> None:
    print(f"edge-askd: {message}", file=sys.stderr, flush=True)


class Transcriber:
    """Greedy Whisper transcription over ONNX Runtime, OpenVINO or LiteRT, from an export directory."""

    def __init__(
        self,
        export_dir: str | Path,
        backend: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
        device: str = "auto",
        precision_hint: str | None = None,
        silence_gate: SilenceGate | None = DEFAULT_GATE,
        language: str | None = None,
        task: str | None = None,
    ) -> None:
        """language: a code ("fr") for a multilingual export, "auto" to detect it per file (from the first
        speech chunk), None for the export's own (English); task: transcribe or translate.
        device: auto (the export target's, e.g. CUDA for jetson-orin, falling back to the CPU with one line on
        stderr when the provider is missing), cpu, cuda or tensorrt."""
        start = time.perf_counter()
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.variant = choose_variant(self.manifest, backend, precision)
        target_device = self.manifest["target"].get("device", "CPU")
        self.device = resolve_device(device, self.variant, target_device, note=_note)
        tok = self.manifest["tokenizer"]
        spec = backend_spec(
            self.export_dir,
            self.manifest,
            self.variant,
            threads=threads or self.manifest["target"].get("threads"),
            device=self.device,
            precision_hint=precision_hint,
        )
        if tok.get("table"):  # exports since 2026-12: the tokens' bytes precomputed
            table = verify_file(self.export_dir, tok["table"], self.manifest)
            self.detokenizer = Detokenizer.from_table(table)
            if self.detokenizer.first_special != tok["eos"]:
                raise ModelError(f"{table}: made for another tokenizer than {MANIFEST}'s; re-run edge-askd export")
        else:
            tokenizer_json = verify_file(self.export_dir, tok["file"], self.manifest)
            self.detokenizer = Detokenizer.from_file(tokenizer_json, first_special=tok["eos"])
        self.vocab = load_vocab(self.export_dir, self.manifest)
        if self.vocab.shortlisted and language not in (None, "en"):
            raise ModelError(
                f"{self.export_dir}: this export's vocabulary is shortlisted to English ({self.vocab.size} tokens); "
                f"for language={language!r} re-export with `edge-askd export ... --vocab full`"
            )
        self.detect = language == "auto"
        if self.detect and not self.manifest["tokenizer"].get("lang_to_id"):
            raise ModelError(
                f"{self.export_dir}: this export is English-only; language detection needs a multilingual one"
            )
        self.task = task
        self.settings = self.vocab.settings(decode_settings(self.manifest, None if self.detect else language, task))
        self.padded_input = self.manifest["mel"]["input"] == "padded_30s"
        self.n_mels = self.manifest["mel"]["n_mels"]
        self.tail_frames = int(self.manifest["mel"].get("tail_frames", 0))  # exports before the margin: 0
        self.min_frames = int(self.manifest["mel"].get("min_frames", 0))
        self.language = tok.get("language") if language in (None, "auto") else language
        self.gate = silence_gate
        self.buckets = sorted(spec.buckets)
        self.backend = load_backend(self.variant["format"], spec)
        self._cache = allocate_cache([tuple(s) for s in self.variant["io"]["cache_shapes"]])
        self.load_seconds = time.perf_counter() - start

    def mel(self, audio: np.ndarray) -> np.ndarray:
        return model_mel(audio, self.padded_input, self.n_mels, self.buckets, self.tail_frames, self.min_frames)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Whisper's language ID: one decoder step from <|sot|>, softmax over the language tokens only; returns
        (code, probability). Audio past 30 s is ignored."""
        return self._detect(self.backend.run_encoder(self.mel(audio[:N_SAMPLES_30S])))

    def _detect(self, cross: list[np.ndarray]) -> tuple[str, float]:
        lang_to_id = self.manifest["tokenizer"].get("lang_to_id") or {}
        if not lang_to_id:
            raise ModelError(f"{self.export_dir}: this export is English-only; it has no language tokens")
        self.backend.bind_cross(cross)
        (sot,) = self.vocab.to_graph([self.manifest["tokenizer"]["sot"]])
        logits = decoder_call(self.backend, [sot], 0, self._cache)
        codes = [code.strip("<|>") for code in lang_to_id]
        scores = np.asarray(logits, dtype=np.float64)[self.vocab.to_graph(list(lang_to_id.values()))]
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return codes[best], float(probs[best])

    def greedy_tokens(self, audio: np.ndarray, cross: list[np.ndarray] | None = None) -> list[int]:
        """The parity gate's path for one clip of <= 30 s: no VAD, no silence gate, the greedy tokenizer ids.
        cross: the clip's cross K/V when they are already computed (by another encoder, for a comparison)."""
        cross = self.backend.run_encoder(self.mel(audio)) if cross is None else cross
        result = greedy_decode(self.backend, cross, self.settings, len(audio) / SAMPLE_RATE, self._cache)
        return self.vocab.to_full(result.tokens)

    def stream(self, config: StreamConfig | None = None) -> TranscriptionStream:
        """A push-audio stream over this model: `add_audio(samples, rate)` -> line events (stream.py)."""
        return TranscriptionStream(self.transcribe, config)

    def chunks(self, audio: np.ndarray) -> list[Chunk]:
        return speech_chunks(audio)

    def describe(self) -> dict:
        """What runs, for benchmarks and logs."""
        return {
            "backend": self.variant["format"],
            "precision": self.variant["precision"],
            "device": self.device,
            "size_bytes": sum((self.export_dir / rel).stat().st_size for rel in variant_files(self.variant)),
            "decoder_bytes": self.decoder_bytes(),
        }

    def decoder_bytes(self) -> int | None:
        """Bytes of the weights one decoder step reads (its cross-attention K/V come from the encoder pass): as the
        export counted them (an ONNX decoder's lookup-only token table left out), else the decoder graph's files.
        None for TFLite, whose one file holds the encoder and decoder signatures."""
        if "decoder_step_bytes" in self.variant:
            return int(self.variant["decoder_step_bytes"])
        rels = [rel for key, rel in self.variant["files"].items() if key.startswith("decoder")]
        if not rels:
            return None
        return sum((self.export_dir / rel).stat().st_size for rel in rels)

    def transcribe(self, audio: str | Path | np.ndarray, draft: list[int] | None = None) -> Transcription:
        """draft: tokenizer ids expected at the start of the text (a stream's previous partial of this audio);
        where the variant allows, they are checked in one decoder call instead of decoded one by one, and the
        result is the same as without them (decoding.greedy_decode)."""
        t0 = time.perf_counter()
        timings = {"load_audio": 0.0, "features": 0.0, "encode": 0.0, "decode": 0.0}
        seconds = 0.0

        def timed_blocks(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal seconds
            while True:
                t = time.perf_counter()
                block = next(blocks, None)
                timings["load_audio"] += time.perf_counter() - t
                if block is None:
                    return
                seconds += len(block) / SAMPLE_RATE
                yield block

        if isinstance(audio, np.ndarray):
            samples = np.asarray(audio, dtype=np.float32)
            seconds = len(samples) / SAMPLE_RATE
            chunks: Iterable[Chunk] = self.chunks(samples)
        else:  # a file is read and resampled in blocks: memory stays flat however long it is
            chunks = stream_chunks(timed_blocks(stream_audio(audio)))
        tokens: list[int] = []
        segments: list[Segment] = []
        steps = drafted = 0
        try:
            graph_draft = self.vocab.to_graph(draft or [])
        except ModelError:  # ids this export's shortlist cannot produce: not a draft of it
            graph_draft = []
        settings = None if self.detect else self.settings
        language, probability = (None, None) if self.detect else (self.language, None)
        for chunk in chunks:
            if self.gate is not None and self.gate.is_silent(chunk.audio):
                continue
            t = time.perf_counter()
            mel = self.mel(chunk.audio)
            timings["features"] += time.perf_counter() - t
            if mel.shape[-1] < 2:
                continue
            t = time.perf_counter()
            cross = self.backend.run_encoder(mel)
            timings["encode"] += time.perf_counter() - t
            t = time.perf_counter()
            if settings is None:  # language="auto": detected once per file, on its first speech
                language, probability = self._detect(cross)
                settings = self.vocab.settings(decode_settings(self.manifest, language, self.task))
            result = greedy_decode(
                self.backend, cross, settings, len(chunk.audio) / SAMPLE_RATE, self._cache, draft=graph_draft
            )
            graph_draft = []  # it drafts the first chunk's text only
            timings["decode"] += time.perf_counter() - t
            steps += result.steps
            drafted += result.drafted
            chunk_tokens = self.vocab.to_full(result.tokens)
            tokens += chunk_tokens
            text = self.detokenizer.decode(chunk_tokens).strip()
            if text:
                segments.append(chunk.segment(text, chunk_tokens))
        timings["total"] = time.perf_counter() - t0
        timings["decoder_steps"] = float(steps)
        timings["drafted_tokens"] = float(drafted)
        return Transcription(
            text=" ".join(s.text for s in segments),
            tokens=tokens,
            audio_seconds=seconds,
            language=language,
            language_probability=probability,
            timings=timings,
            segments=segments,
        )


__all__ = [
    "Chunk",
    "Transcriber",
    "backend_spec",
    "decode_settings",
    "load_vocab",
    "model_mel",
    "choose_variant",
    "read_manifest",
    "sha256_file",
    "speech_chunks",
    "stream_chunks",
    "verify_file",
]
