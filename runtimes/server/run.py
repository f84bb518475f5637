"""`serve()`: both servers in one asyncio loop over one set of loaded models, and the clean shutdown.

SIGTERM (or Ctrl-C) stops accepting, answers requests still sending audio with a "shutting down" error, lets the
ones being transcribed finish (up to `grace_s`), then returns 0. uvicorn's own signal capture is switched off: it
re-raises the signal after its shutdown, which would end the process with -15 instead of 0, and it would stop
only the HTTP side.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys

from ..errors import EdgeAskdError
from .core import Engine, ModelInfo, ServeConfig, parse_host_port, require
from .http_server import build_app
from .wyoming_server import WyomingServer


def bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        raise EdgeAskdError(f"--http {host}:{port}: cannot listen ({exc.strerror or exc})") from None
    sock.setblocking(False)
    return sock


def check_dependencies(config: ServeConfig) -> None:
    """Before the model loads: one line naming the extra if a server's package is missing."""
    if config.wyoming:
        require("wyoming")
    if config.http:
        require("starlette")
        require("uvicorn")
        require("multipart")


def serve(transcribers: list, config: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; -> exit status 0. transcribers: one loaded model per worker."""
    check_dependencies(config)
    return asyncio.run(_serve(transcribers, config))


async def _http_server(engine: Engine, info: ModelInfo, config: ServeConfig):
    uvicorn = require("uvicorn")

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # the serve loop owns SIGTERM/SIGINT for both protocols
            yield

    host, port = parse_host_port(config.http or "")
    sock = bind(host, port)
    server = Server(
        uvicorn.Config(
            build_app(engine, info, config),
            log_level="warning",
            access_log=False,  # log_request() writes the one line per request
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(config.grace_s)),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
        raise EdgeAskdError(f"--http {config.http}: the HTTP server did not start")
    return server, task, sock


async def _serve(transcribers: list, config: ServeConfig) -> int:
    engine = Engine(transcribers, config.queue)
    info = ModelInfo.of(engine.transcriber, config.model_name)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    wyoming = http = None
    try:
        where = []
        if config.wyoming:
            wyoming = WyomingServer(config.wyoming, engine, info, config)
            await wyoming.start()
            where.append(f"wyoming {config.wyoming}")
        if config.http:
            http = await _http_server(engine, info, config)
            host, port = http[2].getsockname()[:2]
            where.append(f"http http://{host}:{port}/v1")
        variant = engine.transcriber.variant
        print(
            f"edge-askd serve: {info.name} ({variant['format']}/{variant['precision']}, {len(transcribers)} worker(s), "
            f"queue {config.queue}, max {config.max_bytes} B / {config.max_seconds:g} s per request) on "
            f"{', '.join(where)}",
            file=sys.stderr,
            flush=True,
        )
        waiters = [asyncio.create_task(stop.wait())] + ([http[1]] if http else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if http and http[1].done() and not stop.is_set():
            http[1].result()
            raise EdgeAskdError("the HTTP server stopped unexpectedly")
        print("edge-askd serve: shutting down (requests in flight finish)", file=sys.stderr, flush=True)
    finally:
        engine.closing = True  # new requests get "shutting down"
        if http:
            http[0].should_exit = True
        if wyoming:
            await wyoming.stop(config.grace_s)
        if http:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http[1], config.grace_s + 5)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await loop.run_in_executor(None, engine.close)
    print("edge-askd serve: stopped", file=sys.stderr, flush=True)
    return 0


__all__ = ["check_dependencies", "serve"]
