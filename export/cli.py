"""`edge-askd export CHECKPOINT --target T --out DIR`: argparse wiring for the main CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .targets import TARGETS


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX / OpenVINO / TFLite for a board, parity-checked",
        description="Export a Whisper checkpoint (teacher:NAME or a checkpoint directory) for a target board. "
        "Every artifact is checked against PyTorch on real speech; manifest.json records the results.",
    )
    parser.add_argument("checkpoint", help="teacher:tiny.en, teacher:base or a Hugging Face checkpoint directory")
    parser.add_argument("--target", required=True, choices=sorted(TARGETS), help="board profile (formats, threads)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (manifest.json + artifacts)")
    parser.add_argument("--wer-budget", type=float, default=1.0, help="abs WER points a quantized file may lose")
    parser.add_argument("--clips", default=None, help="comma-separated real clips for the parity gate")
    parser.add_argument(
        "--onnx-int8-encoder",
        choices=("auto", "dynamic", "weight_only"),
        default="auto",
        help="onnx-int8 encoder quantization; auto: dynamic, weight-only if dynamic fails the gate (default)",
    )
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    from edge_askd.hf_transcriber import resolve_checkpoint

    from .parity import DEFAULT_CLIPS, ParityConfig
    from .pipeline import ExportOptions, export_checkpoint, runs_in

    clips = tuple(args.clips.split(",")) if args.clips else DEFAULT_CLIPS
    options = ExportOptions(
        parity=ParityConfig(clips=clips, wer_budget=args.wer_budget), onnx_int8_encoder=args.onnx_int8_encoder
    )
    path = export_checkpoint(resolve_checkpoint(args.checkpoint), args.target, args.out, options)
    manifest = json.loads(path.read_text())
    for variant in manifest["variants"]:
        parity = variant.get("parity") or {}
        size = sum(manifest["files"][rel]["size"] for rel in _rels(variant)) / 1e6
        status = "ok" if variant["valid"] else f"INVALID ({parity.get('reason') or variant.get('error')})"
        if runs_in(variant):
            status += f"  runs in {runs_in(variant)}"
        if (variant.get("quantization") or {}).get("dynamic_encoder"):
            status += "  encoder weight-only (dynamic failed the gate)"
        print(
            f"{variant['name']:16s} {size:7.1f} MB  logit diff {parity.get('max_logit_diff', float('nan')):.2e}  "
            f"WER {parity.get('wer', float('nan')):5.2f}  {status}"
        )
    print(path)
    return 0


def _rels(variant: dict) -> list[str]:
    from edge_askd_runtime.transcriber import variant_files

    return variant_files(variant) if variant.get("files") else []
