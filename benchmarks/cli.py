"""`edge-askd bench` arguments and entry point."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .run import DEFAULT_PEERS, BenchConfig


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark exports and peers side by side on this machine")
    p.add_argument("exports", nargs="*", metavar="EXPORT_DIR", help="export directories to benchmark (runtime)")
    p.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help="comma-separated peers (pytorch:teacher:base, faster-whisper:base:int8, ...); '' for none",
    )
    p.add_argument("--lengths", default="2,5,10,30", help="clip lengths in seconds")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--compute-device",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        default="auto",
        help="where export variants run (default: the export target's device, CPU if its provider is missing)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--reference", default="pytorch:teacher:base", help="candidate that speed-ups are relative to")
    p.add_argument(
        "--autotune",
        action="store_true",
        help="save the fastest runtime within the WER budget as this device's default model",
    )
    p.add_argument("--wer-budget", type=float, default=1.0, help="WER points above the best allowed by --autotune")
    p.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from .autotune import choose, write_device_default
    from .candidates import runtime_candidates
    from .report import markdown_table, plot_all
    from .run import run_benchmark, write_json_atomic

    candidates = [c for d in args.exports for c in runtime_candidates(d, args.compute_device)] + [
        p for p in args.peers.split(",") if p
    ]
    config = BenchConfig(
        candidates=candidates,
        lengths_s=[float(x) for x in args.lengths.split(",")],
        repeats=args.repeats,
        threads=args.threads,
        out_dir=args.out,
    )
    result = run_benchmark(config, progress=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    write_json_atomic(args.out / "results.json", result)
    reference = args.reference if any(r["candidate"] == args.reference for r in result["rows"]) else None
    table = markdown_table(result, reference)
    (args.out / "results.md").write_text(table)
    try:  # plots are for the training machine's report; a board install has no matplotlib
        plots = plot_all(result, args.out) if result["rows"] else []
    except ModuleNotFoundError as exc:
        plots = []
        print(f"[bench] no plots ({exc.name} is not installed; pip install matplotlib for them)", file=sys.stderr)
    print(table)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}" + "".join(f", {p.name}" for p in plots))
    if args.autotune:
        row = choose(result, wer_budget=args.wer_budget / 100)
        path = write_device_default(row)
        print(
            f"device default: {row['candidate']} ({row['e2e_ms']['median']:.0f} ms, WER {row['wer'] * 100:.2f}%)"
            f" -> {path}"
        )
    print(json.dumps({"rows": len(result["rows"]), "missing": list(result["missing"])}))
    return 0
