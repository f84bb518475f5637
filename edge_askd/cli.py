"""`edge-askd` command line. Subcommands import their heavy dependencies lazily, so `edge-askd --help`
and the device-side commands work without torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_askd_runtime.errors import EdgeAskdError

from .load import check_model_name, load_transcriber


def _transcriber_from(args: argparse.Namespace):
    return load_transcriber(
        args.model, args.threads, args.language, args.backend, args.precision, args.compute_device, args.task
    )


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from edge_askd_runtime.audio import checked_audio_path
    from edge_askd_runtime.writers import parse_formats, write_outputs

    if args.output_format is not None and args.output_dir is None:
        raise EdgeAskdError("--output-format needs --output-dir DIR (the transcript files are written there)")
    formats = parse_formats(args.output_format or "all") if args.output_dir is not None else []
    if args.output_dir is not None:
        try:
            args.output_dir.mkdir(parents=True, exist_ok=True)  # fail before the model load, not after
        except OSError as exc:
            raise EdgeAskdError(f"{args.output_dir}: cannot create output directory ({exc.strerror})") from None
    if args.model is not None:
        check_model_name(args.model)
    # When no file can be read, say so before a model load (seconds for a PyTorch teacher) that would serve none.
    unreadable = []
    for path in args.files:
        try:
            checked_audio_path(path)
        except EdgeAskdError as exc:
            unreadable.append(exc)
    if len(unreadable) == len(args.files):
        for exc in unreadable:
            print(f"edge-askd: error: {exc}", file=sys.stderr)
        return 1
    transcriber = _transcriber_from(args)
    failures = 0
    stems: dict[str, int] = {}
    for path in args.files:
        try:
            result = transcriber.transcribe(path)
        except EdgeAskdError as exc:
            # One bad file must not lose the others' results.
            print(f"edge-askd: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if formats:
            # a/x.wav and b/x.wav in one run must not overwrite each other's x.srt.
            stem = Path(path).stem
            stems[stem] = stems.get(stem, 0) + 1
            stem = stem if stems[stem] == 1 else f"{stem}-{stems[stem]}"
            try:
                written = write_outputs(result, path, args.output_dir, formats, stem=stem)
            except OSError as exc:
                print(f"edge-askd: error: {path}: cannot write transcript ({exc})", file=sys.stderr)
                failures += 1
            else:
                print(f"[{path}] wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps({"file": str(path), **result.to_dict()}, ensure_ascii=False))
        elif len(args.files) > 1:
            print(f"{path}\t{result.text}")
        else:
            print(result.text)
        if args.timings:
            t = result.timings
            print(
                f"[{path}] audio {result.audio_seconds:.2f} s, total {t['total'] * 1000:.0f} ms, "
                f"RTF {t['total'] / max(result.audio_seconds, 1e-9):.3f} (model load {transcriber.load_seconds:.2f} s)",
                file=sys.stderr,
            )
        sys.stdout.flush()
    return 1 if failures else 0


def _cmd_listen(args: argparse.Namespace) -> int:
    from edge_askd_runtime.live import ListenConfig, list_input_devices, listen
    from edge_askd_runtime.stream import StreamConfig

    if args.list_devices:
        print("\n".join(list_input_devices()) or "no input devices found")
        return 0
    transcriber = _transcriber_from(args)
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    config = ListenConfig(
        device=device,
        max_seconds=args.max_seconds,
        output=args.output,
        stream=StreamConfig(endpoint_ms=args.endpoint_ms),
    )
    tty = sys.stderr.isatty()

    def show_partial(text: str) -> None:
        if text:
            print(f"\r\033[K… {text}" if tty else f"… {text}", end="" if tty else "\n", file=sys.stderr, flush=True)

    def show_final(line) -> None:
        if tty:
            print("\r\033[K", end="", file=sys.stderr)
        print(line.text, flush=True)
        print(
            f"[final {line.latency_ms:.0f} ms after end of speech: endpoint wait {line.endpoint_ms:.0f}"
            f" + behind {line.behind_ms:.0f} + compute {line.compute_ms:.0f} ms]",
            file=sys.stderr,
            flush=True,
        )

    def show_ready() -> None:
        print("listening… (Ctrl-C to stop)", file=sys.stderr, flush=True)

    def show_warning(message: str) -> None:
        print(f"{chr(13) + chr(27) + '[K' if tty else ''}edge-askd: warning: {message}", file=sys.stderr, flush=True)

    lines = listen(
        transcriber.transcribe,
        config,
        on_partial=show_partial,
        on_final=show_final,
        on_ready=show_ready,
        on_warning=show_warning,
    )
    if lines:

        def median(values) -> float:
            return sorted(values)[len(lines) // 2]

        print(
            f"{len(lines)} lines; end-of-speech to final text: median {median(x.latency_ms for x in lines):.0f} ms, "
            f"max {max(x.latency_ms for x in lines):.0f} ms (median endpoint wait "
            f"{median(x.endpoint_ms for x in lines):.0f} ms, behind {median(x.behind_ms for x in lines):.0f} ms, "
            f"compute {median(x.compute_ms for x in lines):.0f} ms)",
            file=sys.stderr,
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    # Lazy: the server code and its protocol packages load only for `serve`.
    from edge_askd_runtime.server import ServeConfig, check_dependencies, serve
    from edge_askd_runtime.stream import StreamConfig

    config = ServeConfig(
        wyoming=args.wyoming,
        http=args.http,
        workers=args.workers,
        queue=args.queue,
        max_bytes=args.max_bytes,
        max_seconds=args.max_seconds,
        grace_s=args.grace,
        partials=not args.no_partials,
        model_name=args.model_name,
        stream=StreamConfig(endpoint_ms=args.endpoint_ms),
    )
    check_dependencies(config)  # before the model loads: a missing extra is one line, at once
    not_export = f"{args.model}: serve runs the torch-free runtime; pass --model EXPORT_DIR (a manifest.json)"
    if args.model is not None and not (Path(args.model) / "manifest.json").is_file():
        raise EdgeAskdError(not_export)
    transcribers = [_transcriber_from(args) for _ in range(args.workers)]
    if not hasattr(transcribers[0], "manifest"):  # the autotuned default was a PyTorch model
        raise EdgeAskdError(not_export)
    return serve(transcribers, config)


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge_askd_runtime.verify import verify_export

    checks = verify_export(args.export_dir, args.backend or "auto", args.precision, args.threads)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.passed]
    if failed:
        names = ", ".join(c.variant for c in failed)
        raise EdgeAskdError(
            f"{args.export_dir}: {names} failed on-board verification (see above); run another variant "
            "(--backend/--precision) or re-export with a stricter precision for this board"
        )
    return 0


def _cmd_teacher(args: argparse.Namespace) -> int:
    from .teacher import materialise_teacher

    print(materialise_teacher(args.name, force=args.force))
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="export dir, teacher:tiny.en, teacher:base or a checkpoint dir "
        "(default: this device's autotuned model, else teacher:base)",
    )
    p.add_argument(
        "--language",
        default=None,
        help="language code for multilingual models, or auto to detect it (default: the model's own, en)",
    )
    p.add_argument("--task", choices=("transcribe", "translate"), default=None, help="multilingual models only")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: library default)")
    p.add_argument(
        "--backend",
        choices=("auto", "onnxruntime", "openvino", "litert"),
        default=None,
        help="runtime for an export directory (default: the autotuned one, else the first valid variant)",
    )
    p.add_argument("--precision", default=None, help="variant precision of an export: fp32, fp16, int8 (default: best)")
    p.add_argument(
        "--compute-device",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        default=None,
        help="where an export runs (default: its target's device, e.g. CUDA on jetson-orin; CPU if unavailable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-askd", description="Distil Whisper and run it on edge boards.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3; any rate)")
    _add_model_args(p)
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    p.add_argument("--timings", action="store_true", help="print per-file latency to stderr")
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write transcript files DIR/NAME.FORMAT (stdout is unchanged)",
    )
    p.add_argument(
        "--output-format",
        default=None,
        metavar="txt|json|srt|vtt|all",
        help="formats written to --output-dir, a comma list allowed (default: all)",
    )
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("listen", help="transcribe the microphone live")
    _add_model_args(p)
    p.add_argument("--device", default=None, help="input device index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    p.add_argument("--endpoint-ms", type=int, default=180, help="silence that ends an utterance (ms)")
    p.add_argument("--output", type=Path, default=None, help="append each final line to this file")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much audio")
    p.set_defaults(func=_cmd_listen)

    p = sub.add_parser(
        "serve", help="serve an export over Wyoming (Home Assistant) and/or an OpenAI-compatible HTTP API"
    )
    _add_model_args(p)
    p.add_argument("--wyoming", default=None, metavar="URI", help="Wyoming server, e.g. tcp://0.0.0.0:10300")
    p.add_argument("--http", default=None, metavar="HOST:PORT", help="OpenAI-compatible API, e.g. 0.0.0.0:8000")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="transcriptions computed in parallel, each with its own copy of the model (default: 1)",
    )
    p.add_argument("--queue", type=int, default=8, help="requests waiting beyond the workers; more get busy (8)")
    p.add_argument("--max-bytes", type=int, default=25 * 1024 * 1024, help="largest request in bytes (25 MiB)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="longest request audio in seconds (300)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds requests in flight get on SIGTERM (30)")
    p.add_argument("--endpoint-ms", type=int, default=180, help="Wyoming partials: silence that ends a line (ms)")
    p.add_argument("--no-partials", action="store_true", help="Wyoming: no streamed partial transcripts")
    p.add_argument("--model-name", default=None, help="advertised model name (default: the export directory's)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("verify", help="re-run an export's parity gate on this device (torch-free)")
    p.add_argument("export_dir", type=Path, metavar="EXPORT_DIR", help="an export directory (manifest.json)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "openvino", "litert"), default=None)
    p.add_argument("--precision", default=None, help="only this precision (default: every valid variant)")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("teacher", help="convert a bundled Whisper teacher into a local checkpoint")
    p.add_argument("name", help="tiny.en or base")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.set_defaults(func=_cmd_teacher)

    from edge_askd_bench.cli import add_bench_parser
    from edge_askd_export.cli import add_export_parser

    from .distill.cli import add_distill_parser

    add_distill_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)

    from .data.cli import add_data_parser
    from .quickstart import add_quickstart_parser

    add_data_parser(sub)
    add_quickstart_parser(sub)
    return parser


def _quiet_libraries() -> None:
    # Offline by design: nothing may reach a model hub, and library progress bars/advice are noise here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeAskdError as exc:
        print(f"edge-askd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-askd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
