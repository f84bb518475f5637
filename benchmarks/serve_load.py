"""Load test of `edge-askd serve`: concurrent clients, each request with its own real clip, no cross-talk.

    python -m edge_askd_bench.serve_load --model EXPORT_DIR [--clients 8] [--requests 5]
                                         [--protocol mixed|http|wyoming] [--threads N] [--workers N] [--json OUT]

Starts the server (both protocols, one process, one model), transcribes every clip once alone for its expected
text, then runs `clients` concurrent clients of `requests` requests each; request j of client i sends clip
(i * requests + j) mod the clip count, so concurrent requests carry different audio. Every answer must be
exactly its own clip's expected text (greedy decoding of the same samples is deterministic): an answer that is
another clip's text is cross-talk, any other difference a mismatch, a missing answer a drop. Prints throughput
and latency p50/p90/p99 (request sent -> answer); exits 1 on any failure. `mixed` alternates the clients
between the OpenAI-compatible HTTP API and Wyoming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Clip:
    name: str
    wav: bytes  # the file as uploaded over HTTP
    pcm: bytes  # 16 kHz mono int16, as streamed over Wyoming
    seconds: float


@dataclass
class Outcome:
    client: int
    index: int
    protocol: str
    clip: str
    latency_s: float
    status: str  # ok | cross-talk | mismatch | error
    text: str


def load_clips() -> list[Clip]:
    import soundfile as sf

    from edge_askd.real_clips import fetch_clip
    from edge_askd_export.parity import DEFAULT_CLIPS

    clips = []
    for name in DEFAULT_CLIPS:
        path = fetch_clip(name)
        samples, rate = sf.read(str(path), dtype="int16")
        if rate != 16000 or samples.ndim != 1:
            raise SystemExit(f"{path}: expected 16 kHz mono; the bench sends the same samples over both protocols")
        clips.append(Clip(name, path.read_bytes(), samples.astype("<i2").tobytes(), len(samples) / rate))
    return clips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout:.0f} s")


def http_transcribe(port: int, clip: Clip, timeout: float = 300.0) -> str:
    """POST the clip as multipart/form-data with the standard library; -> the transcript text."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{clip.name}.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode(),
            clip.wav,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/audio/transcriptions",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["text"]
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}") from None


def wyoming_transcribe(port: int, clip: Clip, timeout: float = 300.0) -> str:
    """The events Home Assistant sends (Transcribe, AudioStart, 100 ms AudioChunks, AudioStop) -> Transcript."""
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error

    async def run() -> str:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(16000, 2, 1).event())
            for start in range(0, len(clip.pcm), 3200):
                await client.write_event(AudioChunk(16000, 2, 1, clip.pcm[start : start + 3200]).event())
            await client.write_event(AudioStop().event())
            while True:
                event = await asyncio.wait_for(client.read_event(), timeout)
                if event is None:
                    raise RuntimeError("the server closed the connection without a transcript")
                if Error.is_type(event.type):
                    raise RuntimeError(f"Wyoming error: {Error.from_event(event).text}")
                if Transcript.is_type(event.type):
                    return Transcript.from_event(event).text

    return asyncio.run(run())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(
    http_port: int, wyoming_port: int, clips: list[Clip], expected: dict[str, str], args: argparse.Namespace
) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(args.clients)
    by_text = {text: name for name, text in expected.items()}

    def client(i: int) -> None:
        protocol = args.protocol if args.protocol != "mixed" else ("http" if i % 2 == 0 else "wyoming")
        start_gate.wait()
        for j in range(args.requests):
            clip = clips[(i * args.requests + j) % len(clips)]
            sent = time.perf_counter()
            try:
                if protocol == "http":
                    text = http_transcribe(http_port, clip)
                else:
                    text = wyoming_transcribe(wyoming_port, clip)
                if text == expected[clip.name]:
                    status = "ok"
                elif by_text.get(text, clip.name) != clip.name:
                    status = "cross-talk"
                else:
                    status = "mismatch"
            except Exception as exc:  # a refused or dropped request is a result here, not a crash
                text, status = str(exc), "error"
            with lock:
                outcomes.append(Outcome(i, j, protocol, clip.name, time.perf_counter() - sent, status, text))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="export directory (manifest.json)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=5, help="requests per client")
    p.add_argument("--protocol", choices=("mixed", "http", "wyoming"), default="mixed")
    p.add_argument("--threads", type=int, default=None, help="the server's --threads")
    p.add_argument("--workers", type=int, default=1, help="the server's --workers")
    p.add_argument("--json", type=Path, default=None, help="also write the summary and every request here")
    args = p.parse_args(argv)

    clips = load_clips()
    http_port, wyoming_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "edge_askd.cli",
        "serve",
        "--model",
        str(args.model),
        "--http",
        f"127.0.0.1:{http_port}",
        "--wyoming",
        f"tcp://127.0.0.1:{wyoming_port}",
        "--workers",
        str(args.workers),
        "--queue",
        str(max(8, args.clients)),  # every client has a slot: a refusal would be a drop here
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stderr=log, stdout=log)
        try:
            wait_for_port(http_port, server)
            wait_for_port(wyoming_port, server)
            expected = {clip.name: http_transcribe(http_port, clip) for clip in clips}
            outcomes, wall = run_load(http_port, wyoming_port, clips, expected, args)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                exit_code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                exit_code = -9
        log.seek(0)
        server_log = log.read()

    total = args.clients * args.requests
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "cross-talk", "mismatch", "error")}
    latencies = [o.latency_s * 1000 for o in outcomes if o.status != "error"]
    audio = sum(next(c.seconds for c in clips if c.name == o.clip) for o in outcomes if o.status == "ok")
    summary = {
        "clients": args.clients,
        "requests_per_client": args.requests,
        "protocol": args.protocol,
        "workers": args.workers,
        "requests": total,
        "answered": len(outcomes) - counts["error"],
        "dropped": total - len(outcomes) + counts["error"],
        **{k.replace("-", "_"): v for k, v in counts.items()},
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3) if wall else 0.0,
        "audio_x_realtime": round(audio / wall, 2) if wall else 0.0,
        "latency_ms": {q: round(percentile(latencies, int(q[1:])), 1) for q in ("p50", "p90", "p99")},
        "server_exit": exit_code,
    }
    print(
        f"{total} requests ({args.clients} clients x {args.requests}, {args.protocol}): "
        f"{summary['answered']} answered, "
        f"{counts['ok']} correct, {counts['cross-talk']} cross-talk, {counts['mismatch']} mismatched, "
        f"{summary['dropped']} dropped; {summary['throughput_rps']} req/s, {summary['audio_x_realtime']}x real time; "
        f"latency p50 {summary['latency_ms']['p50']:.0f} ms, p90 {summary['latency_ms']['p90']:.0f} ms, "
        f"p99 {summary['latency_ms']['p99']:.0f} ms; server exit {exit_code}"
    )
    for outcome in outcomes:
        if outcome.status != "ok":
            print(
                f"  client {outcome.client} #{outcome.index} {outcome.protocol} {outcome.clip}: {outcome.status}: "
                f"{outcome.text[:200]}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"summary": summary, "expected": expected, "requests": [asdict(o) for o in outcomes]}, indent=2)
        )
    failed = counts["ok"] != total or exit_code != 0
    if failed:
        print(server_log[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
