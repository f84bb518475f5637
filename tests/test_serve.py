"""`edge-askd serve` against the real clients over loopback: the `wyoming` client sending what Home Assistant
sends, the `openai` client and curl against the HTTP API, bad input of every kind answered while the server keeps
serving, SIGTERM during requests, and the load benchmark (no cross-talk between concurrent requests).

The servers run as real subprocesses with torch and transformers blocked, as on a board."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from edge_askd.real_clips import REAL_CLIPS
from edge_askd_runtime.scoring import normalise, wer
from tests.test_device_imports import BLOCKER

pytest.importorskip("wyoming", reason="the server extra is not installed: pip install 'edge-askd[server]'")
openai = pytest.importorskip("openai", reason="the test extra is not installed")

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402

JFK = REAL_CLIPS["jfk"].text
SHORT = "arctic_a0009"  # 3 s: the quick "next good request" after each bad one
MAX_BYTES = 1_000_000  # the module server's limits: small, so that the tests can exceed them cheaply
MAX_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, log: Path, *args: str) -> subprocess.Popen:
    """`python -m edge_askd.cli serve ...` in a fresh interpreter that cannot import torch or transformers."""
    code = BLOCKER + textwrap.dedent(
        f"""
        import runpy
        sys.argv = ["edge-askd", "serve", "--model", {str(model)!r}, "--threads", "1", *{list(args)!r}]
        runpy.run_module("edge_askd.cli", run_name="__main__")
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the server did not listen on {port}: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the server did not exit within a minute of SIGTERM")


class Server:
    def __init__(self, proc: subprocess.Popen, http: int, wyoming: int, log: Path) -> None:
        self.proc, self.http, self.wyoming, self.log = proc, http, wyoming, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}/v1"

    def client(self):
        return openai.OpenAI(base_url=self.url, api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def server(teacher_export, tmp_path_factory):
    """Both protocols in one process over one loaded model, with small limits."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    http, wyoming = free_port(), free_port()
    proc = start_server(
        teacher_export,
        log,
        "--http",
        f"127.0.0.1:{http}",
        "--wyoming",
        f"tcp://127.0.0.1:{wyoming}",
        "--max-bytes",
        str(MAX_BYTES),
        "--max-seconds",
        str(MAX_SECONDS),
    )
    wait_for_port(http, proc, log)
    wait_for_port(wyoming, proc, log)
    yield Server(proc, http, wyoming, log)
    assert stop_server(proc) == 0, log.read_text()[-2000:]


def pcm16(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
        return w.readframes(w.getnframes())


def close_to(text: str, reference: str, limit: float = 0.10) -> bool:
    return wer([reference], [text]) <= limit


# ---- Wyoming ----------------------------------------------------------------------------------------------------


async def wyoming_request(
    port: int,
    audio: bytes,
    rate: int = 16000,
    width: int = 2,
    channels: int = 1,
    pace_s: float = 0.0,
    client: AsyncTcpClient | None = None,
    transcribe: Transcribe | None = None,
) -> tuple[list[tuple[float, Event]], float]:
    """Home Assistant's event sequence with 100 ms chunks, reading while sending; -> ([(arrival, event)] up to
    the TranscriptStop or an Error, when AudioStop was sent)."""
    own = client is None
    client = client or AsyncTcpClient("127.0.0.1", port)
    if own:
        await client.connect()
    events: list[tuple[float, Event]] = []

    async def read() -> None:
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            assert event is not None, f"connection closed after {[e.type for _, e in events]}"
            events.append((time.perf_counter(), event))
            if TranscriptStop.is_type(event.type) or Error.is_type(event.type):
                return

    try:
        reader = asyncio.create_task(read())
        await client.write_event((transcribe or Transcribe(language="en")).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = rate * width * channels // 10
        for start in range(0, len(audio), step):
            await client.write_event(AudioChunk(rate, width, channels, audio[start : start + step]).event())
            await asyncio.sleep(pace_s)
        stop_sent = time.perf_counter()
        await client.write_event(AudioStop().event())
        await reader
    finally:
        if own:
            await client.disconnect()
    return events, stop_sent


def transcript_of(events: list[tuple[float, Event]]) -> str:
    finals = [Transcript.from_event(e).text for _, e in events if Transcript.is_type(e.type)]
    errors = [Error.from_event(e).text for _, e in events if Error.is_type(e.type)]
    assert len(finals) == 1 and not errors, (finals, errors)
    return finals[0]


def test_wyoming_describe_lists_the_asr_program_and_model(server):
    async def describe() -> Info:
        async with AsyncTcpClient("127.0.0.1", server.wyoming) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await asyncio.wait_for(client.read_event(), 30))

    info = asyncio.run(describe())
    (program,) = info.asr
    assert program.name == "edge-askd" and program.installed and program.version
    assert program.supports_transcript_streaming
    (model,) = program.models
    assert model.name == "teacher_rpi4" and model.languages == ["en"] and model.installed


def test_wyoming_streams_partials_before_the_final_transcript(server, real_clip):
    events, stop_sent = asyncio.run(wyoming_request(server.wyoming, pcm16(real_clip("jfk")), pace_s=0.1))
    types = [e.type for _, e in events]
    assert types[0] == TranscriptStart().event().type and types[-1] == TranscriptStop().event().type
    assert types.count("transcript-start") == 1 and types[-2] == "transcript", types
    early = [t for t, e in events if TranscriptChunk.is_type(e.type) and t < stop_sent]
    assert early, f"no partial arrived while the audio streamed: {types}"
    text = transcript_of(events)
    assert close_to(text, JFK), text
    # Clients append the chunks: together they are the stream's settled text so far (best effort, its last line
    # is only in the final Transcript), so they share words with the transcript.
    streamed = "".join(TranscriptChunk.from_event(e).text for _, e in events if TranscriptChunk.is_type(e.type))
    assert len(set(normalise(streamed).split()) & set(normalise(JFK).split())) >= 3, streamed


def test_partial_text_sends_only_words_that_will_not_change():
    from edge_askd_runtime.server.wyoming_server import PartialText
    from edge_askd_runtime.stream import LineCompleted, LineUpdated

    def completed(line: int, text: str) -> LineCompleted:
        # Only line and text matter here; the timing fields (still growing in stream.py) are zeros.
        timing = {f.name: 0.0 for f in dataclasses.fields(LineCompleted) if f.name not in ("line", "text")}
        return LineCompleted(line=line, text=text, **timing)

    partials = PartialText()
    sent = [
        partials.feed(LineUpdated(0, "And so my", 0.0)),  # nothing to agree with yet
        partials.feed(LineUpdated(0, "And so my fellow", 0.0)),  # "And so my" agreed
        partials.feed(LineUpdated(0, "And so my fellow Americans", 0.0)),
        partials.feed(completed(0, "And so my fellow Americans,")),
        partials.feed(LineUpdated(1, "ask not", 3.5)),
        partials.feed(LineUpdated(1, "ask not what", 3.5)),
        partials.feed(completed(1, "Ask not what your country")),  # revises "ask": stop
    ]
    assert sent == ["", "And so my", " fellow", " Americans,", "", " ask not", ""]


def test_wyoming_converts_44k_stereo_int16(server, real_clip):
    mono = sf.read(str(real_clip("jfk")), dtype="float32")[0]
    stereo = np.repeat(soxr.resample(mono, 16000, 44100)[:, None], 2, axis=1)
    pcm = (np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes()
    events, _ = asyncio.run(wyoming_request(server.wyoming, pcm, rate=44100, channels=2))
    text = transcript_of(events)
    assert close_to(text, JFK), text


BAD_WYOMING = {
    "width 3": [AudioStart(16000, 3, 1).event(), AudioChunk(16000, 3, 1, b"\0" * 4800).event(), AudioStop().event()],
    "rate 0": [AudioStart(0, 2, 1).event(), AudioChunk(0, 2, 1, b"\0" * 3200).event(), AudioStop().event()],
    "missing format fields": [Event("audio-start", {"rate": 16000}), AudioStop().event()],
    "chunk before start": [AudioChunk(16000, 2, 1, b"\0" * 3200).event(), AudioStop().event()],
    "zero-length audio": [AudioStart(16000, 2, 1).event(), AudioStop().event()],
    "odd bytes": [
        AudioStart(16000, 2, 1).event(),
        AudioChunk(16000, 2, 1, b"\x01" * 3201).event(),
        AudioStop().event(),
    ],
    "too long": [AudioStart(16000, 2, 1).event()]
    + [AudioChunk(16000, 2, 1, b"\0\1" * 16000).event() for _ in range(MAX_SECONDS + 2)]
    + [AudioStop().event()],
    "unknown model": [Transcribe(name="no-such-model").event(), AudioStart(16000, 2, 1).event(), AudioStop().event()],
    "malformed Transcribe": [
        Event("transcribe", {"language": 5}),
        AudioStart(16000, 2, 1).event(),
        AudioStop().event(),
    ],
}


@pytest.mark.parametrize("case", list(BAD_WYOMING))
def test_wyoming_bad_request_gets_an_error_and_the_connection_serves_the_next(server, real_clip, case):
    async def run() -> tuple[Error, str]:
        async with AsyncTcpClient("127.0.0.1", server.wyoming) as client:
            for event in BAD_WYOMING[case]:
                await client.write_event(event)
            event = await asyncio.wait_for(client.read_event(), 30)
            assert event is not None and Error.is_type(event.type), event
            events, _ = await wyoming_request(server.wyoming, pcm16(real_clip(SHORT)), client=client)
            return Error.from_event(event), transcript_of(events)

    error, text = asyncio.run(run())
    assert error.text and error.code and "\n" not in error.text, error
    assert close_to(text, REAL_CLIPS[SHORT].text), text


def test_wyoming_garbage_on_the_wire_is_answered_and_the_server_carries_on(server, real_clip):
    with socket.create_connection(("127.0.0.1", server.wyoming), timeout=30) as sock:
        sock.sendall(b"\x00\xffthis is not json\n")
        reply = sock.makefile("rb").readline()
    assert json.loads(reply)["type"] == "error"
    events, _ = asyncio.run(wyoming_request(server.wyoming, pcm16(real_clip(SHORT))))
    assert close_to(transcript_of(events), REAL_CLIPS[SHORT].text)


def test_wyoming_client_disconnecting_mid_stream_leaves_the_server_serving(server, real_clip):
    async def abandon() -> None:
        client = AsyncTcpClient("127.0.0.1", server.wyoming)
        await client.connect()
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(16000, 2, 1).event())
        pcm = pcm16(real_clip("jfk"))
        for start in range(0, 3200 * 5, 3200):
            await client.write_event(AudioChunk(16000, 2, 1, pcm[start : start + 3200]).event())
        await client.disconnect()

    asyncio.run(abandon())
    events, _ = asyncio.run(wyoming_request(server.wyoming, pcm16(real_clip(SHORT))))
    assert close_to(transcript_of(events), REAL_CLIPS[SHORT].text)
    time.sleep(0.2)
    assert "client disconnected mid-stream" in server.log.read_text()


# ---- HTTP, OpenAI-compatible ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_client_in_every_response_format(server, real_clip, fmt):
    with open(real_clip("jfk"), "rb") as audio:
        result = server.client().audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt)
    if fmt == "json":
        text = result.text
    elif fmt == "verbose_json":
        assert result.duration == pytest.approx(11.0, abs=0.1) and result.language == "en"
        assert result.segments and result.segments[0].start >= 0 and result.segments[-1].end <= 11.1
        text = result.text
        assert " ".join(s.text for s in result.segments).strip() == text.strip()
    else:
        assert isinstance(result, str)
        if fmt == "srt":
            assert result.startswith("1\n") and " --> " in result
        if fmt == "vtt":
            assert result.startswith("WEBVTT") and " --> " in result
        cue_text = [line for line in result.splitlines() if line not in ("", "WEBVTT") and "-->" not in line]
        text = " ".join(line for line in cue_text if not line.isdigit())
    assert close_to(text, JFK), text


def test_openai_segment_granularity_and_the_served_model_name(server, real_clip):
    with open(real_clip(SHORT), "rb") as audio:
        result = server.client().audio.transcriptions.create(
            model="teacher_rpi4", file=audio, response_format="verbose_json", timestamp_granularities=["segment"]
        )
    assert result.segments and close_to(result.text, REAL_CLIPS[SHORT].text)


def test_openai_client_lists_the_model(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["teacher_rpi4"]


def test_curl(server, real_clip):
    proc = subprocess.run(
        [
            "curl",
            "-s",
            "-F",
            f"file=@{real_clip('jfk')}",
            "-F",
            "model=whisper-1",
            f"{server.url}/audio/transcriptions",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(json.loads(proc.stdout)["text"], JFK), proc.stdout


def _wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    sf.write(buffer, (rng.standard_normal(int(seconds * 16000)) * 0.01).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


BAD_HTTP = {
    # case: (filename, content, extra create() arguments, status, code)
    "zero-length file": ("empty.wav", b"", {}, 400, "empty_audio"),
    "a text file": ("notes.txt", b"these are notes, not audio\n" * 20, {}, 400, "invalid_audio"),
    "garbage bytes": ("garbage.wav", np.random.default_rng(1).bytes(40_000), {}, 400, "invalid_audio"),
    "unknown model": ("clip.wav", None, {"model": "whisper-large-v9"}, 404, "model_not_found"),
    "word timestamps": (
        "clip.wav",
        None,
        {"response_format": "verbose_json", "timestamp_granularities": ["word"]},
        400,
        "unsupported_value",
    ),
    "unsupported language": ("clip.wav", None, {"language": "fr"}, 400, "unsupported_language"),
    "oversized upload": ("big.wav", _wav_bytes(2 * MAX_BYTES / 32000), {}, 413, "file_too_large"),
    "too long": ("long.wav", _wav_bytes(MAX_SECONDS + 5), {}, 413, "audio_too_long"),
}


@pytest.mark.parametrize("case", list(BAD_HTTP))
def test_http_bad_request_gets_an_openai_error_and_the_server_serves_the_next(server, real_clip, case):
    name, content, extra, status, code = BAD_HTTP[case]
    if content is None:
        content = Path(real_clip(SHORT)).read_bytes()
    client = server.client()
    arguments = {"model": "whisper-1", **extra}
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(file=(name, content), **arguments)
    error = caught.value
    assert error.status_code == status, error
    body = error.body if isinstance(error.body, dict) else {}
    assert body.get("code") == code and body.get("type") and "message" in body, error.body
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    if case == "unknown model":
        assert "teacher_rpi4" in body["message"]
    with open(real_clip(SHORT), "rb") as audio:
        assert close_to(client.audio.transcriptions.create(model="whisper-1", file=audio).text, REAL_CLIPS[SHORT].text)


def test_curl_oversized_upload_reads_the_413(server, tmp_path):
    # curl sends `Expect: 100-continue` for a body this size: the server answers without reading it.
    big = tmp_path / "big.wav"
    big.write_bytes(_wav_bytes(2 * MAX_BYTES / 32000))
    proc = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", "-F", f"file=@{big}", f"{server.url}/audio/transcriptions"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "413" and json.loads(body)["error"]["code"] == "file_too_large", proc.stdout


def test_http_upload_aborted_mid_way_leaves_the_server_serving(server, real_clip):
    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
    with socket.create_connection(("127.0.0.1", server.http), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 500000\r\n\r\n".encode()
            + head
            + Path(real_clip("jfk")).read_bytes()[:20000]
        )
        time.sleep(0.3)
    with open(real_clip(SHORT), "rb") as audio:
        text = server.client().audio.transcriptions.create(model="whisper-1", file=audio).text
    assert close_to(text, REAL_CLIPS[SHORT].text)
    time.sleep(0.2)
    assert "client disconnected mid-upload" in server.log.read_text()


def test_one_log_line_per_request(server):
    lines = [line for line in server.log.read_text().splitlines() if line.startswith("edge-askd serve: ")]
    requests = [line for line in lines if " audio " in line and " latency " in line and " RTF " in line]
    assert any(line.startswith("edge-askd serve: wyoming ok") for line in requests)
    assert any(line.startswith("edge-askd serve: http 200") for line in requests)
    assert any(line.startswith("edge-askd serve: http 413") for line in requests)
    assert "Traceback" not in server.log.read_text()


# ---- Shutdown, missing extra, load ------------------------------------------------------------------------------


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(teacher_export, real_clip, tmp_path):
    log = tmp_path / "server.log"
    http, wyoming = free_port(), free_port()
    proc = start_server(teacher_export, log, "--http", f"127.0.0.1:{http}", "--wyoming", f"tcp://127.0.0.1:{wyoming}")
    try:
        wait_for_port(http, proc, log)
        wait_for_port(wyoming, proc, log)
        pcm = pcm16(real_clip("jfk"))
        outcome: dict[str, object] = {}

        def http_request() -> None:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{http}/v1", api_key="x", max_retries=0, timeout=60)
            try:
                with open(real_clip("jfk"), "rb") as audio:
                    outcome["http"] = client.audio.transcriptions.create(model="whisper-1", file=audio).text
            except openai.APIError as exc:  # an error the client can read is allowed too
                outcome["http"] = exc

        async def wyoming_requests() -> tuple[list[Event], list[Event]]:
            finishing, streaming = AsyncTcpClient("127.0.0.1", wyoming), AsyncTcpClient("127.0.0.1", wyoming)
            await finishing.connect()
            await streaming.connect()
            for client, audio in ((finishing, pcm), (streaming, pcm[: 3200 * 10])):
                await client.write_event(Transcribe(language="en").event())
                await client.write_event(AudioStart(16000, 2, 1).event())
                for start in range(0, len(audio), 3200):
                    await client.write_event(AudioChunk(16000, 2, 1, audio[start : start + 3200]).event())
            await finishing.write_event(AudioStop().event())  # now being transcribed; `streaming` is mid-audio
            await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            replies = []
            for client in (finishing, streaming):
                events = []
                while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                    events.append(event)
                replies.append(events)
                await client.disconnect()
            return replies[0], replies[1]

        thread = threading.Thread(target=http_request)
        thread.start()
        time.sleep(0.1)
        finished, interrupted = asyncio.run(wyoming_requests())
        thread.join(60)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    finals = [Transcript.from_event(e).text for e in finished if Transcript.is_type(e.type)]
    assert finals and close_to(finals[0], JFK), [e.type for e in finished]
    errors = [Error.from_event(e) for e in interrupted if Error.is_type(e.type)]
    assert errors and errors[0].code == "shutting_down", [e.type for e in interrupted]
    answer = outcome["http"]
    assert isinstance(answer, openai.APIError) or close_to(str(answer), JFK), answer
    assert "stopped" in log.read_text() and "Traceback" not in log.read_text()


def test_a_full_server_refuses_with_busy_and_serves_again_once_free(teacher_export, real_clip, tmp_path):
    # --queue 0: one request at a time. An open Wyoming stream holds its slot from AudioStart on.
    log = tmp_path / "server.log"
    http, wyoming = free_port(), free_port()
    proc = start_server(
        teacher_export, log, "--http", f"127.0.0.1:{http}", "--wyoming", f"tcp://127.0.0.1:{wyoming}", "--queue", "0"
    )
    try:
        wait_for_port(http, proc, log)
        wait_for_port(wyoming, proc, log)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{http}/v1", api_key="x", max_retries=0, timeout=60)
        pcm = pcm16(real_clip(SHORT))

        async def scenario() -> tuple[Error, str]:
            async with AsyncTcpClient("127.0.0.1", wyoming) as holder, AsyncTcpClient("127.0.0.1", wyoming) as other:
                await holder.write_event(AudioStart(16000, 2, 1).event())
                await holder.write_event(AudioChunk(16000, 2, 1, pcm[:3200]).event())
                await asyncio.sleep(0.2)
                await other.write_event(AudioStart(16000, 2, 1).event())
                refused = await asyncio.wait_for(other.read_event(), 30)
                with pytest.raises(openai.APIStatusError) as caught:
                    await asyncio.to_thread(
                        client.audio.transcriptions.create, model="whisper-1", file=(f"{SHORT}.wav", b"RIFF" * 10)
                    )
                assert caught.value.status_code == 503 and caught.value.body["code"] == "server_busy"
                await holder.write_event(AudioStop().event())  # frees the slot once answered
                while (event := await asyncio.wait_for(holder.read_event(), 30)) is not None:
                    if TranscriptStop.is_type(event.type):
                        break
                await other.write_event(AudioStop().event())  # the refused request's AudioStop is ignored
                events, _ = await wyoming_request(wyoming, pcm, client=other)
                return Error.from_event(refused), transcript_of(events)

        error, text = asyncio.run(scenario())
        assert error.code == "server_busy" and "busy" in error.text
        assert close_to(text, REAL_CLIPS[SHORT].text)
        with open(real_clip(SHORT), "rb") as audio:
            assert close_to(
                client.audio.transcriptions.create(model="whisper-1", file=audio).text, REAL_CLIPS[SHORT].text
            )
        assert stop_server(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_missing_server_extra_is_one_line(teacher_export):
    code = BLOCKER.replace('"faster_whisper"}', '"faster_whisper", "wyoming"}') + textwrap.dedent(
        f"""
        from edge_askd.cli import main
        sys.exit(main(["serve", "--model", {str(teacher_export)!r}, "--wyoming", "tcp://127.0.0.1:1"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "pip install 'edge-askd[server]'" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "serve needs --wyoming tcp://HOST:PORT and/or --http HOST:PORT"),
        (["--http", "nonsense"], "--http 'nonsense': use HOST:PORT"),
        (["--wyoming", "tcp://127.0.0.1"], "--wyoming 'tcp://127.0.0.1': use tcp://HOST:PORT"),
        (["--http", ":8000", "--queue", "-1"], "--queue >= 0"),
        (["--http", ":8000", "--model", "teacher:base"], "serve runs the torch-free runtime"),
    ],
)
def test_bad_serve_flags_are_one_line_before_the_model_loads(teacher_export, args, message):
    model = [] if "--model" in args else ["--model", str(teacher_export)]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_askd.cli", "serve", *model, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_an_address_in_use_is_one_line(teacher_export, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "edge_askd.cli", "serve", "--model", str(teacher_export), "--threads", "1"]
            + ["--http", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2 and "cannot listen" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_server_modules_import_without_torch_or_the_training_package():
    blocker = BLOCKER.replace('"faster_whisper"}', '"faster_whisper", "edge_askd"}')
    code = blocker + textwrap.dedent(
        """
        from edge_askd_runtime.server import core, http_server, run, wyoming_server
        assert not {"torch", "transformers", "edge_askd"} & set(sys.modules)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_load_benchmark_small_has_no_drops_and_no_cross_talk(teacher_export, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_askd_bench.serve_load",
            "--model",
            str(teacher_export),
            "--clients",
            "3",
            "--requests",
            "2",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["requests"] == summary["answered"] == summary["ok"] == 6
    assert summary["cross_talk"] == summary["mismatch"] == summary["dropped"] == 0 and summary["server_exit"] == 0
    requests = json.loads(out.read_text())["requests"]
    assert {r["protocol"] for r in requests} == {"http", "wyoming"} and len({r["clip"] for r in requests}) == 6
