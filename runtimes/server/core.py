"""What both servers share: the loaded model behind a bounded executor, the request limits, the request errors
and the one log line per request.

Concurrency model: `workers` compute threads take jobs from one priority queue (final transcriptions before
streaming partials). A `Transcriber` keeps its KV cache and its bound cross-attention feeds on the object, so it is
not safe to call from two threads at once; each worker owns one (the default, 1 worker, loads the model once).
Admission is per request, before any audio is read: at most `workers + queue` requests are inside the server at
a time, the next one is refused at once with "server busy" (HTTP 503 / a Wyoming Error), which also bounds memory
to (workers + queue) x max_bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.metadata
import io
import itertools
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from ..audio import SAMPLE_RATE, resample, to_mono
from ..errors import EdgeAskdError
from ..results import Transcription
from ..stream import StreamConfig

T = TypeVar("T")

FINAL = 0  # priorities: lower runs first
PARTIAL = 1
DEFAULT_MAX_BYTES = 25 * 1024 * 1024  # OpenAI's own upload limit
DEFAULT_MAX_SECONDS = 300.0
INSTALL_HINT = "pip install 'edge-askd[server]'"


def require(module: str) -> Any:
    """Import an optional server dependency, or one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0].replace("_", "-")
        raise EdgeAskdError(f"the servers need {top}, which is not installed: {INSTALL_HINT}") from None


def package_version() -> str:
    try:
        return importlib.metadata.version("edge-askd")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def parse_host_port(spec: str) -> tuple[str, int]:
    """ "HOST:PORT", "[::1]:PORT" or ":PORT" (all interfaces) -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgeAskdError(f"--http {spec!r}: use HOST:PORT, e.g. 0.0.0.0:8000 or 127.0.0.1:8000")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_wyoming_uri(uri: str) -> None:
    parsed = urlparse(uri)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not (parsed.scheme == "tcp" and parsed.hostname and port) and not (parsed.scheme == "unix" and parsed.path):
        raise EdgeAskdError(f"--wyoming {uri!r}: use tcp://HOST:PORT (e.g. tcp://0.0.0.0:10300)")


@dataclass
class ServeConfig:
    wyoming: str | None = None  # tcp://HOST:PORT (or unix:///path)
    http: str | None = None  # HOST:PORT
    workers: int = 1  # transcriptions computed in parallel; each worker holds its own model copy
    queue: int = 8  # admitted requests beyond the running ones; more are refused as busy
    max_bytes: int = DEFAULT_MAX_BYTES  # per request: an upload's size, or the PCM a Wyoming client sends
    max_seconds: float = DEFAULT_MAX_SECONDS  # per request: audio duration
    grace_s: float = 30.0  # on SIGTERM: how long requests in flight may take to finish
    partials: bool = True  # Wyoming: stream partial transcripts while the audio arrives
    model_name: str | None = None  # advertised model name (default: the manifest's, else the export dir's)
    stream: StreamConfig = field(default_factory=StreamConfig)

    def __post_init__(self) -> None:
        if not self.wyoming and not self.http:
            raise EdgeAskdError("serve needs --wyoming tcp://HOST:PORT and/or --http HOST:PORT")
        # Checked here, before the model loads, not when the sockets open.
        if self.wyoming:
            check_wyoming_uri(self.wyoming)
        if self.http:
            parse_host_port(self.http)
        if self.workers < 1 or self.queue < 0:
            raise EdgeAskdError(f"--workers must be >= 1 and --queue >= 0 (got {self.workers}, {self.queue})")
        if self.max_bytes < 1 or self.max_seconds <= 0:
            raise EdgeAskdError(
                f"--max-bytes and --max-seconds must be positive (got {self.max_bytes}, {self.max_seconds})"
            )


class RequestError(EdgeAskdError):
    """A request that cannot be served; its message goes to the client as-is, the server carries on.

    code: machine-readable (a Wyoming Error's code, the OpenAI error's code); status: the HTTP status."""

    def __init__(self, message: str, code: str = "invalid_request", status: int = 400, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.param = param


def busy_error() -> RequestError:
    return RequestError("server busy: every worker and queue slot is taken; retry shortly", "server_busy", 503)


def shutdown_error() -> RequestError:
    return RequestError("server shutting down; retry on another instance or after the restart", "shutting_down", 503)


@dataclass(frozen=True)
class ModelInfo:
    """What the servers advertise: Wyoming's Info, OpenAI's /v1/models."""

    name: str
    languages: list[str]
    language: str | None  # the language it transcribes (None: detected per request)
    version: str
    description: str
    aliases: tuple[str, ...] = ("whisper-1",)  # model names accepted besides `name`

    @classmethod
    def of(cls, transcriber, name: str | None = None) -> ModelInfo:
        manifest = transcriber.manifest
        tok = manifest["tokenizer"]
        languages = sorted(code.strip("<|>") for code in tok.get("lang_to_id") or {}) or [tok.get("language") or "en"]
        model = manifest.get("model") or {}
        served = None if transcriber.detect else (transcriber.language or languages[0])
        variant = transcriber.variant
        return cls(
            name=name or model.get("name") or Path(transcriber.export_dir).resolve().name,
            languages=languages,
            language=served,
            version=package_version(),
            description=f"Whisper export {Path(transcriber.export_dir).name} "
            f"({variant['format']}/{variant['precision']})",
        )

    def check_model(self, requested: str | None) -> None:
        if requested is not None and not isinstance(requested, str):
            raise RequestError(f"model must be a string, not {requested!r}", "invalid_request", 400, "model")
        if requested and requested not in (self.name, *self.aliases):
            raise RequestError(
                f"model {requested!r} is not served here; this server serves {self.name!r} "
                f"(also accepted as {', '.join(repr(a) for a in self.aliases)})",
                "model_not_found",
                404,
                "model",
            )

    def check_language(self, requested: str | None) -> None:
        """A request may name the language it speaks; it must be one this server transcribes. ("en-US" counts
        as "en": Home Assistant sends its pipeline's language with a region.)"""
        if requested is not None and not isinstance(requested, str):
            raise RequestError(f"language must be a string, not {requested!r}", "invalid_request", 400, "language")
        if not requested:
            return
        code = requested.strip().lower().replace("_", "-").split("-")[0]
        allowed = self.languages if self.language is None else [self.language]
        if code not in allowed:
            raise RequestError(
                f"language {requested!r} is not served: this server transcribes {', '.join(allowed)}"
                + ("" if self.language is None else f" (started with --language {self.language})"),
                "unsupported_language",
                400,
                "language",
            )


def pcm16_to_float(pcm: bytes | bytearray) -> np.ndarray:
    return np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float32) / 32768.0


def decode_upload(data: bytes) -> np.ndarray:
    """An uploaded file's audio as mono float32 at 16 kHz; RequestError for anything soundfile cannot read."""
    import soundfile as sf

    if not data:
        raise RequestError("the uploaded file is empty (0 bytes)", "empty_audio", 400, "file")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = re.sub(r"^Error opening <[^>]*>: ", "", detail)  # the BytesIO's repr says nothing to the client
        raise RequestError(
            f"the uploaded file is not audio this server can decode ({detail}); send wav, flac, ogg or mp3",
            "invalid_audio",
            400,
            "file",
        ) from None
    if samples.size == 0:
        raise RequestError("the uploaded audio has no samples", "empty_audio", 400, "file")
    audio = to_mono(np.asarray(samples, dtype=np.float32))
    if not np.all(np.isfinite(audio)):
        raise RequestError("the uploaded audio contains NaN or infinite samples", "invalid_audio", 400, "file")
    return resample(audio, int(rate), SAMPLE_RATE)


def check_duration(seconds: float, limit: float) -> None:
    if seconds > limit:
        raise RequestError(
            f"audio is {seconds:.1f} s long; this server takes at most {limit:g} s per request (--max-seconds)",
            "audio_too_long",
            413,
            "file",
        )


def log_request(
    protocol: str, status: str, audio_s: float, latency_s: float, compute_s: float, detail: str = ""
) -> None:
    """One line per request on stderr. latency: end of the request's audio -> answer (queue wait included);
    RTF: compute / audio seconds."""
    rtf = f"{compute_s / audio_s:.3f}" if audio_s > 0 and compute_s > 0 else "-"
    print(
        f"edge-askd serve: {protocol} {status} audio {audio_s:.2f} s latency {latency_s * 1000:.0f} ms RTF {rtf}"
        + (f" ({detail})" if detail else ""),
        file=sys.stderr,
        flush=True,
    )


class Ticket:
    """One admitted request's slot; released once (exit, or release())."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._engine._release()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    future: concurrent.futures.Future = field(compare=False)
    fn: Callable[[Any], Any] = field(compare=False)


def _stop(transcriber: Any) -> None:
    """The job that ends a worker."""


class Engine:
    """The model(s) behind `len(transcribers)` worker threads, a priority queue and request admission."""

    def __init__(self, transcribers: list, queue_size: int) -> None:
        if not transcribers:
            raise EdgeAskdError("the server needs at least one loaded model")
        self.transcribers = transcribers
        self.capacity = len(transcribers) + queue_size
        self.admitted = 0
        self.closing = False
        self.finals_waiting = 0  # queued final jobs: streams skip partials while any wait
        self._lock = threading.Lock()
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._work, args=(t,), name=f"edge-askd-worker-{i}", daemon=True)
            for i, t in enumerate(transcribers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def transcriber(self):
        return self.transcribers[0]

    def admit(self) -> Ticket:
        """A slot for one request, or RequestError (busy / shutting down) to send the client at once."""
        with self._lock:
            if self.closing:
                raise shutdown_error()
            if self.admitted >= self.capacity:
                raise busy_error()
            self.admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self.admitted -= 1

    def submit(self, fn: Callable[[Any], T], priority: int = FINAL) -> concurrent.futures.Future[T]:
        """Run fn(transcriber) on a worker; a job cancelled before it starts is skipped."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if priority == FINAL:
            with self._lock:
                self.finals_waiting += 1
        self._jobs.put(_Job(priority, next(self._seq), future, fn))
        return future

    async def run(self, fn: Callable[[Any], T], priority: int = FINAL) -> T:
        return await asyncio.wrap_future(self.submit(fn, priority))

    def transcribe_here(self, audio: np.ndarray, draft: list[int] | None = None) -> Transcription:
        """For a TranscriptionStream fed from inside a job: the model of the worker running it."""
        transcriber = getattr(self._local, "transcriber", None)
        if transcriber is None:
            raise RuntimeError("transcribe_here() called outside a worker thread")
        return transcriber.transcribe(audio, draft=draft)

    def _work(self, transcriber) -> None:
        self._local.transcriber = transcriber
        while True:
            job = self._jobs.get()
            if job.fn is _stop:
                return
            if job.priority == FINAL:
                with self._lock:
                    self.finals_waiting -= 1
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(job.fn(transcriber))
            except BaseException as exc:  # handed to the awaiting request, which answers with an error
                job.future.set_exception(exc)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers once the jobs queued so far are done."""
        self.closing = True
        for _ in self._threads:  # after every queued job: the lowest priority there is
            self._jobs.put(_Job(sys.maxsize, next(self._seq), concurrent.futures.Future(), _stop))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def internal_error(exc: BaseException) -> RequestError:
    """A bug or a runtime failure during a request: one line to the client and the log, never a traceback."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, EdgeAskdError):
        return RequestError(str(exc), "invalid_request", 400)
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return RequestError(f"internal error: {type(exc).__name__}{': ' + detail if detail else ''}", "internal_error", 500)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SECONDS",
    "Engine",
    "FINAL",
    "ModelInfo",
    "PARTIAL",
    "RequestError",
    "ServeConfig",
    "Ticket",
    "busy_error",
    "check_wyoming_uri",
    "check_duration",
    "decode_upload",
    "internal_error",
    "log_request",
    "package_version",
    "parse_host_port",
    "pcm16_to_float",
    "require",
    "shutdown_error",
]
