"""The OpenAI-compatible transcription API: `POST /v1/audio/transcriptions`, `GET /v1/models` (Starlette on
uvicorn, both pure-Python wheels on every board).

Multipart fields: `file` (required), `model` (the served model's name or "whisper-1"; absent = the served one),
`language` (must be one the server transcribes), `response_format` = json | text | srt | vtt | verbose_json,
`timestamp_granularities[]` = segment (verbose_json only; word is refused: the runtime has no word times).
`prompt` and `temperature` are accepted and ignored (greedy decoding, no prompt conditioning). Errors use
OpenAI's body, `{"error": {"message", "type", "param", "code"}}`.

The body is read through a byte limit while it arrives, so an oversized upload is refused without being stored;
the rest of it is read and discarded (up to a cap) so that the client, which is still sending, can read the 413.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ..writers import to_srt, to_txt, to_verbose_json, to_vtt
from .core import (
    Engine,
    ModelInfo,
    RequestError,
    ServeConfig,
    check_duration,
    decode_upload,
    internal_error,
    log_request,
    require,
)

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
FORM_OVERHEAD = 64 * 1024  # the other fields and the multipart boundaries, on top of --max-bytes
DRAIN_CAP = 64 * 1024 * 1024  # past the limit, read at most this much more before closing on the client
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


class _TooLarge(Exception):
    pass


def error_body(error: RequestError) -> dict:
    kind = "server_error" if error.status >= 500 else "invalid_request_error"
    return {"error": {"message": str(error), "type": kind, "param": error.param, "code": error.code}}


class _Body:
    """The request body as it arrives, with a byte limit; `drain()` reads and drops what is left."""

    def __init__(self, request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.total = 0
        self.done = False

    async def chunks(self):
        from starlette.requests import ClientDisconnect

        while not self.done:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            body = message.get("body", b"")
            self.total += len(body)
            self.done = not message.get("more_body", False)
            if self.total > self.limit:
                raise _TooLarge()
            if body:
                yield body

    async def drain(self) -> None:
        with contextlib.suppress(Exception):
            while not self.done and self.total <= self.limit + DRAIN_CAP:
                message = await self.request.receive()
                if message["type"] == "http.disconnect":
                    return
                self.total += len(message.get("body", b""))
                self.done = not message.get("more_body", False)


def build_app(engine: Engine, info: ModelInfo, config: ServeConfig):
    """The Starlette application serving `engine`'s model."""
    require("starlette")
    require("multipart")  # python-multipart: Starlette's form parser
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    created = int(Path(engine.transcriber.export_dir, "manifest.json").stat().st_mtime)
    task = getattr(engine.transcriber, "task", None) or "transcribe"

    def error_response(error: RequestError) -> JSONResponse:
        return JSONResponse(error_body(error), status_code=error.status)

    def model_entry() -> dict:
        return {"id": info.name, "object": "model", "created": created, "owned_by": "edge-askd"}

    async def models(request) -> Response:
        return JSONResponse({"object": "list", "data": [model_entry()]})

    async def model(request) -> Response:
        try:
            info.check_model(request.path_params["model"])
        except RequestError as exc:
            return error_response(exc)
        return JSONResponse(model_entry())

    async def health(request) -> Response:
        return JSONResponse({"status": "ok", "model": info.name})

    async def read_form(request, body: _Body) -> dict:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise RequestError(
                "send multipart/form-data with a `file` field (e.g. curl -F file=@clip.wav)", "invalid_request", 400
            )
        parser = MultiPartParser(
            request.headers, body.chunks(), max_files=1, max_fields=32, max_part_size=FORM_OVERHEAD
        )
        try:
            return await parser.parse()
        except MultiPartException as exc:
            raise RequestError(f"malformed multipart body ({exc.message})", "invalid_request", 400) from None

    def validate(form) -> tuple[object, str]:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError("the `file` field must be an uploaded audio file", "invalid_request", 400, "file")
        info.check_model(form.get("model") or None)
        info.check_language(form.get("language") or None)
        fmt = str(form.get("response_format") or "json")
        if fmt not in FORMATS:
            raise RequestError(
                f"response_format {fmt!r} is not supported; use {', '.join(FORMATS)}",
                "invalid_request",
                400,
                "response_format",
            )
        granularities = [str(g) for g in form.getlist("timestamp_granularities[]")]
        if "word" in granularities:
            raise RequestError(
                "word timestamps are not available (the runtime decodes without timestamps); "
                "use timestamp_granularities[]=segment with response_format=verbose_json",
                "unsupported_value",
                400,
                "timestamp_granularities",
            )
        if unknown := [g for g in granularities if g != "segment"]:
            raise RequestError(
                f"timestamp_granularities {unknown} unknown; only segment",
                "invalid_request",
                400,
                "timestamp_granularities",
            )
        if granularities and fmt != "verbose_json":
            raise RequestError(
                "timestamp_granularities needs response_format=verbose_json",
                "invalid_request",
                400,
                "timestamp_granularities",
            )
        if str(form.get("stream") or "false").lower() not in ("false", "0"):
            raise RequestError(
                "streamed responses are not supported; drop stream=true", "unsupported_value", 400, "stream"
            )
        return upload, fmt

    async def transcriptions(request) -> Response:
        declared = request.headers.get("content-length", "")
        body = _Body(request, config.max_bytes + FORM_OVERHEAD)
        audio_s = compute_s = 0.0
        received = time.perf_counter()
        try:
            with engine.admit():
                if declared.isdigit() and int(declared) > body.limit:
                    raise _TooLarge()
                form = await read_form(request, body)
                try:
                    upload, fmt = validate(form)
                    data = await upload.read()
                finally:
                    await form.close()
                received = time.perf_counter()

                def job(transcriber):
                    start = time.perf_counter()
                    audio = decode_upload(data)
                    check_duration(len(audio) / 16000, config.max_seconds)
                    return transcriber.transcribe(audio), time.perf_counter() - start

                result, compute_s = await engine.run(job)
                audio_s = result.audio_seconds
                result.language = result.language or info.language  # English-only exports report none
            if fmt == "json":
                response: Response = JSONResponse({"text": result.text})
            elif fmt == "verbose_json":
                response = Response(to_verbose_json(result, task), media_type=MEDIA_TYPES[fmt])
            else:
                render = {"text": to_txt, "srt": to_srt, "vtt": to_vtt}[fmt]
                response = Response(render(result), media_type=MEDIA_TYPES[fmt])
            log_request("http", "200", audio_s, time.perf_counter() - received, compute_s, fmt)
            return response
        except ClientDisconnect:
            log_request("http", "aborted", 0.0, 0.0, 0.0, "client disconnected mid-upload")
            return Response(status_code=400)
        except _TooLarge:
            error = RequestError(
                f"upload over {config.max_bytes} bytes (--max-bytes); send a shorter or compressed file",
                "file_too_large",
                413,
                "file",
            )
        except Exception as exc:
            error = internal_error(exc)
        # Expect: 100-continue clients (curl, for large files) have not sent the body: answering is enough.
        if request.headers.get("expect", "").lower() != "100-continue" or body.total:
            await body.drain()
        log_request(
            "http", f"{error.status} {error.code}", audio_s, time.perf_counter() - received, compute_s, str(error)
        )
        return error_response(error)

    async def http_error(request, exc) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += "; this server has POST /v1/audio/transcriptions and GET /v1/models"
        return error_response(RequestError(message, code, exc.status_code))

    return Starlette(
        routes=[
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


__all__ = ["FORMATS", "build_app", "error_body"]
