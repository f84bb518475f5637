"""The Wyoming speech-to-text server Home Assistant talks to (`edge-askd serve --wyoming tcp://0.0.0.0:10300`).

A request is `Transcribe`, `AudioStart`, `AudioChunk` x N, `AudioStop`; the answer `Transcript(text)` is the
whole request's audio transcribed in one pass (the client has already endpointed the utterance, as with
wyoming-faster-whisper). While the chunks arrive, a per-connection `TranscriptionStream` runs on the same
workers at low priority and its line texts go out as `TranscriptStart`, `TranscriptChunk` ..., then the final
`Transcript` and `TranscriptStop`. Wyoming defines a chunk as *part of* the transcript (clients append them),
while a streaming partial can still change, so only words two consecutive partials agree on (local agreement)
and completed lines are sent: the appended chunks never need taking back. Anything a request gets wrong is
answered with a Wyoming `Error(text, code)`; the connection stays usable for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import EdgeAskdError
from ..stream import LineCompleted, LineUpdated, TranscriptionStream
from .core import (
    FINAL,
    PARTIAL,
    Engine,
    ModelInfo,
    RequestError,
    ServeConfig,
    Ticket,
    check_duration,
    internal_error,
    log_request,
    pcm16_to_float,
    require,
    shutdown_error,
)

MAX_DATA_BYTES = 1 << 20  # an event's JSON data; audio travels in the payload
WIDTHS = (1, 2, 4)  # what wyoming's audioop conversion handles
MAX_RATE = 384_000
PROGRAM = "edge-askd"  # the AsrProgram's name in Info


class ProtocolError(EdgeAskdError):
    """Bytes on the connection that are not Wyoming events: answered with an Error, then the connection closes."""


async def read_event(reader: asyncio.StreamReader, max_payload: int):
    """wyoming.event.async_read_event with limits: a header, data or payload larger than the server accepts is
    refused before it is read into memory (the library would read whatever length the header claims)."""
    from wyoming.event import Event

    try:
        line = await reader.readline()
    except ValueError:  # asyncio.LimitOverrunError: a header line over the stream's 64 KiB limit
        raise ProtocolError("event header longer than 64 KiB") from None
    if not line:
        return None
    try:
        header = json.loads(line)
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ValueError("no event type")
        data = header.get("data") or {}
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"not a Wyoming event header ({exc})") from None
    if not 0 <= data_length <= MAX_DATA_BYTES or not 0 <= payload_length <= max_payload:
        raise ProtocolError(
            f"event {header['type']!r} too large (data {data_length} B, payload {payload_length} B; "
            f"limits {MAX_DATA_BYTES} B, {max_payload} B)"
        )
    if data_length:
        try:
            data.update(json.loads(await reader.readexactly(data_length)))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"event {header['type']!r} has malformed data ({exc})") from None
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return b[:n]


class PartialText:
    """The stream's line events -> append-only TranscriptChunk texts.

    An open line's partial is re-transcribed as audio arrives, so its last words may still change: only the word
    prefix two consecutive partials agree on is sent, and a completed line sends the rest of its final text. If a
    line's final text revises words already sent, nothing more is sent for it (the final Transcript is
    authoritative). Joined, the chunks read as the text so far, lines separated by a space."""

    def __init__(self) -> None:
        self._any = False
        self._line: int | None = None
        self._previous: list[str] = []
        self._sent: list[str] = []

    def feed(self, event: object) -> str:
        if isinstance(event, LineUpdated):
            return self._update(event.line, event.text.split(), final=False)
        if isinstance(event, LineCompleted):
            return self._update(event.line, event.text.split(), final=True)
        return ""

    def _update(self, line: int, words: list[str], final: bool) -> str:
        if line != self._line:
            self._line, self._previous, self._sent = line, [], []
        stable = words if final else _common_prefix(self._previous, words)
        self._previous = words
        new: list[str] = []
        if stable[: len(self._sent)] == self._sent:
            new = stable[len(self._sent) :]
            self._sent = self._sent + new
        if final:
            self._line, self._previous, self._sent = None, [], []
        if not new:
            return ""
        text = (" " if self._any else "") + " ".join(new)
        self._any = True
        return text


@dataclass
class _Request:
    ticket: Ticket
    rate: int
    width: int
    channels: int
    converter: object
    language: str | None
    stream: TranscriptionStream | None
    pcm: bytearray = field(default_factory=bytearray)  # 16 kHz mono int16
    pending: list[np.ndarray] = field(default_factory=list)
    feeder: asyncio.Task | None = None
    partials: PartialText = field(default_factory=PartialText)
    transcript_started: bool = False
    finalising: bool = False

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE


def build_info(info: ModelInfo, partials: bool):
    from wyoming.info import AsrModel, AsrProgram, Attribution, Info

    return Info(
        asr=[
            AsrProgram(
                name=PROGRAM,
                description="Distilled Whisper on a torch-free runtime (edge-askd)",
                attribution=Attribution(name="edge-askd", url=""),
                installed=True,
                version=info.version,
                models=[
                    AsrModel(
                        name=info.name,
                        description=info.description,
                        attribution=Attribution(name="OpenAI Whisper", url="https://github.com/openai/whisper"),
                        installed=True,
                        version=info.version,
                        languages=list(info.languages),
                    )
                ],
                supports_transcript_streaming=partials,
            )
        ]
    )


class WyomingConnection:
    """One client connection: a sequence of requests, each answered with a Transcript or an Error."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        engine: Engine,
        info: ModelInfo,
        config: ServeConfig,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.engine, self.info, self.config = engine, info, config
        self.request: _Request | None = None
        self.transcribe_language: str | None = None
        # After an Error: "chunks" ignores the failed request's remaining chunks up to its AudioStop (a new
        # AudioStart begins a new request); "audio" (a refused Transcribe) ignores its AudioStart too.
        self.ignore: str | None = None
        self.closing = False

    async def write(self, event) -> None:
        from wyoming.event import async_write_event

        await async_write_event(event.event(), self.writer)

    async def run(self) -> None:
        try:
            while not self.closing:
                try:
                    event = await read_event(self.reader, self.config.max_bytes)
                except ProtocolError as exc:
                    await self.fail(RequestError(str(exc), "protocol_error"), log=True)
                    break
                if event is None:
                    break
                try:
                    await self.handle(event)
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a malformed event or a bug: one Error, and the connection goes on
                    await self.fail(internal_error(exc))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; its request (if any) is dropped below
        finally:
            if self.request is not None and not self.request.finalising:
                log_request("wyoming", "aborted", self.request.seconds, 0.0, 0.0, "client disconnected mid-stream")
            self.drop_request()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def handle(self, event) -> None:
        from wyoming.asr import Transcribe
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.info import Describe
        from wyoming.ping import Ping, Pong

        if Describe.is_type(event.type):
            await self.write(build_info(self.info, self.config.partials))
        elif Ping.is_type(event.type):
            await self.write(Pong(text=Ping.from_event(event).text))
        elif Transcribe.is_type(event.type):
            await self.on_transcribe(Transcribe.from_event(event))
        elif AudioStart.is_type(event.type):
            await self.on_audio_start(event)
        elif AudioChunk.is_type(event.type):
            await self.on_audio_chunk(event)
        elif AudioStop.is_type(event.type):
            await self.on_audio_stop()
        # Anything else (wake, tts, ...) is not ours: ignored, as other Wyoming servers do.

    async def fail(self, error: RequestError, log: bool = True, ignore: str | None = "chunks") -> None:
        """Answer the open request with an Error; its remaining audio is ignored up to its AudioStop."""
        seconds = self.request.seconds if self.request else 0.0
        self.drop_request()
        self.ignore = ignore
        if log:
            log_request("wyoming", f"error {error.code}", seconds, 0.0, 0.0, str(error))
        from wyoming.error import Error

        with contextlib.suppress(ConnectionError):
            await self.write(Error(text=str(error), code=error.code))

    def drop_request(self) -> None:
        request, self.request = self.request, None
        if request is None:
            return
        if request.feeder is not None:
            request.feeder.cancel()
        request.ticket.release()

    async def on_transcribe(self, transcribe) -> None:
        if self.request is not None:
            await self.fail(RequestError("Transcribe while a request's audio is still open", "protocol_error"))
            return
        self.ignore = None
        try:
            # Some clients name the ASR program from Info rather than its model.
            self.info.check_model(None if transcribe.name == PROGRAM else transcribe.name)
            self.info.check_language(transcribe.language)
        except RequestError as exc:
            await self.fail(exc, ignore="audio")
            return
        self.transcribe_language = transcribe.language

    async def on_audio_start(self, event) -> None:
        if self.ignore == "audio":
            return
        self.ignore = None
        if self.request is not None:
            await self.fail(RequestError("AudioStart while a request's audio is still open", "protocol_error"))
            return
        try:
            rate, width, channels = _audio_format(event.data, "AudioStart")
            ticket = self.engine.admit()
        except RequestError as exc:
            await self.fail(exc)
            return
        from wyoming.audio import AudioChunkConverter

        stream = None
        if self.config.partials:
            stream = TranscriptionStream(self.engine.transcribe_here, self.config.stream)
        self.request = _Request(
            ticket,
            rate,
            width,
            channels,
            AudioChunkConverter(rate=SAMPLE_RATE, width=2, channels=1),
            self.transcribe_language,
            stream,
        )

    async def on_audio_chunk(self, event) -> None:
        from wyoming.audio import AudioChunk

        if self.ignore:
            return
        request = self.request
        if request is None:
            await self.fail(
                RequestError(
                    "AudioChunk before AudioStart; send AudioStart(rate, width, channels) first", "protocol_error"
                )
            )
            return
        try:
            rate, width, channels = _audio_format(event.data, "AudioChunk")
            if (rate, width, channels) != (request.rate, request.width, request.channels):
                raise RequestError(
                    f"AudioChunk format {rate} Hz/{width} B/{channels} ch differs from AudioStart's "
                    f"{request.rate} Hz/{request.width} B/{request.channels} ch",
                    "invalid_audio_format",
                )
            audio = event.payload or b""
            if len(audio) % (width * channels):
                raise RequestError(
                    f"AudioChunk of {len(audio)} bytes is not whole {width}-byte x {channels}-channel frames",
                    "invalid_audio",
                )
            converted = request.converter.convert(AudioChunk(rate, width, channels, audio)).audio
            request.pcm += converted
            # The limit is on what the request keeps (16 kHz mono int16); each raw chunk is converted and dropped.
            if len(request.pcm) > self.config.max_bytes:
                raise RequestError(
                    f"request audio over {self.config.max_bytes} bytes at 16 kHz/16-bit (--max-bytes)",
                    "audio_too_large",
                    413,
                )
            check_duration(request.seconds, self.config.max_seconds)
        except RequestError as exc:
            await self.fail(exc)
            return
        if request.stream is not None and converted:
            request.pending.append(pcm16_to_float(converted))
            if request.feeder is None or request.feeder.done():
                request.feeder = asyncio.create_task(self.feed(request))

    async def feed(self, request: _Request) -> None:
        """Partials: push the audio that arrived into the connection's stream, one job at a time, at low
        priority; audio that arrives meanwhile goes in the next job, and partials are skipped while a final
        transcription waits for a worker."""
        from wyoming.asr import TranscriptChunk, TranscriptStart

        stream = request.stream
        assert stream is not None
        while request.pending and self.request is request:
            block = np.concatenate(request.pending)
            request.pending.clear()
            partial_ok = self.engine.finals_waiting == 0
            try:
                events = await self.engine.run(
                    lambda _t, block=block, ok=partial_ok: stream.add_audio(block, SAMPLE_RATE, partial_ok=ok), PARTIAL
                )
            except Exception as exc:  # partials are best effort; the final transcription reports real errors
                log_request("wyoming", "partials-off", request.seconds, 0.0, 0.0, str(internal_error(exc)))
                return
            for text in filter(None, (request.partials.feed(e) for e in events)):
                if self.request is not request:
                    return
                if not request.transcript_started:
                    request.transcript_started = True
                    await self.write(TranscriptStart(language=self._language(request)))
                await self.write(TranscriptChunk(text=text))

    def _language(self, request: _Request) -> str | None:
        return self.info.language or (request.language or None)

    async def on_audio_stop(self) -> None:
        from wyoming.asr import Transcript, TranscriptStart, TranscriptStop

        if self.ignore:
            self.ignore = None
            self.transcribe_language = None
            return
        request = self.request
        if request is None:
            await self.fail(RequestError("AudioStop without AudioStart", "protocol_error"), ignore=None)
            return
        if request.feeder is not None:  # the final supersedes any partial still queued or running
            request.feeder.cancel()
        if not request.pcm:
            await self.fail(RequestError("the request has no audio (zero-length)", "empty_audio"), ignore=None)
            return
        request.finalising = True
        audio = pcm16_to_float(request.pcm)
        end_of_audio = time.perf_counter()

        def final(transcriber):
            start = time.perf_counter()
            return transcriber.transcribe(audio), time.perf_counter() - start

        try:
            result, compute = await self.engine.run(final, FINAL)
        except Exception as exc:
            await self.fail(internal_error(exc), ignore=None)
            return
        language = result.language or self._language(request)
        if self.config.partials and not request.transcript_started:
            await self.write(TranscriptStart(language=language))
        await self.write(Transcript(text=result.text, language=language))
        if self.config.partials:
            await self.write(TranscriptStop())
        log_request("wyoming", "ok", request.seconds, time.perf_counter() - end_of_audio, compute)
        self.drop_request()
        self.transcribe_language = None

    async def shut_down(self) -> None:
        """SIGTERM: a request still receiving audio gets an Error now; one being transcribed finishes."""
        self.closing = True
        if self.request is not None and not self.request.finalising:
            await self.fail(shutdown_error())


def _audio_format(data: dict, what: str) -> tuple[int, int, int]:
    try:
        rate, width, channels = int(data["rate"]), int(data["width"]), int(data["channels"])
    except (KeyError, TypeError, ValueError):
        raise RequestError(
            f"{what} needs integer rate, width and channels (got {json.dumps(data, default=str)[:200]})",
            "invalid_audio_format",
        ) from None
    if not 0 < rate <= MAX_RATE or width not in WIDTHS or channels not in (1, 2):
        raise RequestError(
            f"{what} format rate={rate} width={width} channels={channels} is not supported; "
            f"rate 1-{MAX_RATE} Hz, width {'/'.join(map(str, WIDTHS))} bytes, 1 or 2 channels",
            "invalid_audio_format",
        )
    return rate, width, channels


class WyomingServer:
    """The listening socket and its connections; `stop()` drains them for a clean shutdown."""

    def __init__(self, uri: str, engine: Engine, info: ModelInfo, config: ServeConfig) -> None:
        require("wyoming")
        self.uri = uri
        self.engine, self.info, self.config = engine, info, config
        self.connections: dict[asyncio.Task, WyomingConnection] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        parsed = urlparse(self.uri)
        try:
            if parsed.scheme == "tcp" and parsed.hostname and parsed.port:
                self._server = await asyncio.start_server(self._accept, parsed.hostname, parsed.port)
            elif parsed.scheme == "unix" and parsed.path:
                self._server = await asyncio.start_unix_server(self._accept, parsed.path)
            else:
                raise EdgeAskdError(f"--wyoming {self.uri!r}: use tcp://HOST:PORT (e.g. tcp://0.0.0.0:10300)")
        except ValueError:  # a port that is not a number
            raise EdgeAskdError(f"--wyoming {self.uri!r}: use tcp://HOST:PORT (e.g. tcp://0.0.0.0:10300)") from None
        except OSError as exc:
            raise EdgeAskdError(f"--wyoming {self.uri}: cannot listen ({exc.strerror or exc})") from None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = WyomingConnection(reader, writer, self.engine, self.info, self.config)
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = connection
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Only stop() cancels, at shutdown; ending quietly keeps asyncio's stream callback (which calls
            # task.exception() on 3.11) from printing a traceback for it.
            pass
        finally:
            self.connections.pop(task, None)

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            await connection.shut_down()
        deadline = time.monotonic() + grace_s
        while any(c.request is not None for c in self.connections.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections.values()):  # EOF ends each connection's read loop
            connection.reader.feed_eof()
            with contextlib.suppress(Exception):
                connection.writer.close()
        tasks = list(self.connections)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)


__all__ = ["PartialText", "ProtocolError", "WyomingConnection", "WyomingServer", "build_info", "read_event"]
