"""`edge-askd export CHECKPOINT --target T --out DIR`: argparse wiring for the main CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .targets import TARGETS

PARITY_SETS = ("real-sets", "clips7")
FORMATS = ("edge-askd", "sherpa-onnx", "optimum")


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX / OpenVINO / TFLite for a board, parity-checked",
        description="Export a Whisper checkpoint (teacher:NAME or a checkpoint directory) for a target board. "
        "Every artifact is checked against PyTorch on real speech; manifest.json records the results.",
    )
    parser.add_argument("checkpoint", help="teacher:tiny.en, teacher:base or a Hugging Face checkpoint directory")
    parser.add_argument(
        "--target", choices=sorted(TARGETS), help="board profile (formats, threads); needed unless --format sherpa-onnx"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="edge-askd",
        help="edge-askd: the board variants, parity-gated (default); sherpa-onnx: encoder/decoder ONNX (fp32, int8) "
        "and tokens.txt in sherpa-onnx's Whisper layout, for sherpa_onnx.OfflineRecognizer.from_whisper "
        "(gated by running sherpa-onnx on the --clips; sherpa-onnx.json records the result and the tail_paddings); "
        "optimum: a teacher through optimum's own exporter (encoder_model.onnx, decoder_model_merged.onnx), gated by "
        "loading it with optimum's ORTModelForSpeechSeq2Seq",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (manifest.json + artifacts)")
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="--format sherpa-onnx: an edge-askd export of the same checkpoint, whose runtime is compared too",
    )
    parser.add_argument("--wer-budget", type=float, default=1.0, help="abs WER points a quantized file may lose")
    parser.add_argument("--clips", default=None, help="comma-separated real clips for the fp32 parity gate")
    parser.add_argument(
        "--parity-set",
        choices=PARITY_SETS,
        default="real-sets",
        help="what quantized files are judged on: real-sets (clean-en + telephone-dev, 157 clips, 855 words; "
        "default) or clips7 (the fp32 gate's 7 short clips, 94 words: quick, but one flipped word is 1.06 WER points)",
    )
    parser.add_argument(
        "--parity-max-clips", type=int, default=None, help="clips per real set (evenly spaced; default: the gate's)"
    )
    parser.add_argument(
        "--min-token-agreement",
        type=float,
        default=None,
        help="least share of PyTorch's greedy tokens a quantized file must reproduce (default: the gate's)",
    )
    parser.add_argument(
        "--onnx-int8-encoder",
        choices=("auto", "smoothquant", "dynamic", "weight_only"),
        default="auto",
        help="onnx-int8 encoder quantization; auto: smoothquant (calibrated on real training clips, dynamic int8, "
        "fc2 weight-only), weight-only if it fails the gate (default)",
    )
    parser.add_argument(
        "--onnx-int8-decoder",
        choices=("auto", "dynamic", "weight_only"),
        default="auto",
        help="onnx-int8 decoder quantization; auto: the target's (weight-only, dynamic on rpi4) (default)",
    )
    parser.add_argument(
        "--onnx-int8-head",
        type=_candidates,
        default=16,
        metavar="K",
        help="onnx-int8 weight-only decoder: its output projection a 4-bit pass with the best K logits of each row "
        "recomputed from int8 weights (default 16); 0: the int8 projection whole",
    )
    parser.add_argument(
        "--openvino-int8-encoder",
        choices=("auto", "static", "weight_only"),
        default="auto",
        help="openvino-int8 encoder quantization; auto: static (int8 activations too, calibrated on real training "
        "clips), weight-only if it fails the gate (default)",
    )
    parser.add_argument(
        "--vocab",
        type=_vocab,
        default="full",
        help="output vocabulary: full (default), or the number of English tokens to keep; a smaller output "
        "projection, English only, transcripts can change: docs/vocab-shortlist/README.md",
    )
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    from edge_askd.hf_transcriber import resolve_checkpoint

    if getattr(args, "format", "edge-askd") == "sherpa-onnx":
        return run_sherpa_onnx_export(args)
    if getattr(args, "format", "edge-askd") == "optimum":
        return run_optimum_export(args)
    if args.target is None:
        from edge_askd_runtime.errors import EdgeAskdError

        raise EdgeAskdError("edge-askd export: --target is required (or pass --format sherpa-onnx or optimum)")
    from .pipeline import ExportOptions, export_checkpoint, runs_in

    options = ExportOptions(
        parity=parity_config(args),
        onnx_int8_encoder=args.onnx_int8_encoder,
        onnx_int8_decoder=args.onnx_int8_decoder,
        onnx_int8_head_candidates=args.onnx_int8_head,
        openvino_int8_encoder=args.openvino_int8_encoder,
        vocab=args.vocab,
    )
    path = export_checkpoint(resolve_checkpoint(args.checkpoint), args.target, args.out, options)
    manifest = json.loads(path.read_text())
    for variant in manifest["variants"]:
        parity = variant.get("parity") or {}
        size = sum(manifest["files"][rel]["size"] for rel in _rels(variant)) / 1e6
        status = "ok" if variant["valid"] else f"INVALID ({parity.get('reason') or variant.get('error')})"
        if runs_in(variant):
            status += f"  runs in {runs_in(variant)}"
        quantization = variant.get("quantization") or {}
        if variant["valid"] and quantization.get("failed"):
            tried = ", ".join(f"{f['encoder']}/{f['decoder']}" for f in quantization["failed"])
            status += (
                f"  encoder {quantization['encoder']}, decoder {quantization['decoder']} ({tried} failed the gate)"
            )
        print(f"{variant['name']:16s} {size:7.1f} MB  {_evidence(parity)}  {status}")
    print(path)
    return 0


def run_sherpa_onnx_export(args: argparse.Namespace) -> int:
    from edge_askd.hf_transcriber import resolve_checkpoint
    from edge_askd_runtime.errors import EdgeAskdError

    from .parity import DEFAULT_CLIPS
    from .sherpa_onnx_export import export_sherpa_onnx

    if args.vocab != "full":
        raise EdgeAskdError("edge-askd export --format sherpa-onnx: --vocab must be full (sherpa-onnx needs every id)")
    clips = tuple(args.clips.split(",")) if args.clips else DEFAULT_CLIPS
    checkpoint = resolve_checkpoint(args.checkpoint)
    path = export_sherpa_onnx(checkpoint, args.out, gate_clips=clips, runtime_export=args.compare_with)
    manifest = json.loads(path.read_text())
    parity = manifest["parity"]
    if not parity.get("variants"):
        print(f"edge-askd: not parity-gated: {parity['reason']}", file=sys.stderr)
    for precision, files in manifest["variants"].items():
        size = sum(manifest["files"][name]["size"] for name in files.values()) / 1e6
        gated = parity.get("variants", {}).get(precision)
        verdict = (
            f"  sherpa-onnx WER {gated['wer']:.2f} % (PyTorch {parity['pytorch_wer']:.2f} %), "
            f"{gated['same_text_as_pytorch']}/{len(parity['clips'])} clips as PyTorch, "
            f"{'passed' if gated['passed'] else 'FAILED: ' + gated['reason']}"
            if gated
            else ""
        )
        print(f"sherpa-onnx-{precision:5s} {size:7.1f} MB  {files['encoder']}, {files['decoder']}{verdict}")
    print(f"tail_paddings={manifest['mel']['tail_paddings']}  (pass it to OfflineRecognizer.from_whisper)")
    print(path)
    return 0


def run_optimum_export(args: argparse.Namespace) -> int:
    from edge_askd.hf_transcriber import resolve_checkpoint

    from .optimum_export import export_optimum
    from .parity import DEFAULT_CLIPS

    clips = tuple(args.clips.split(",")) if args.clips else DEFAULT_CLIPS
    path = export_optimum(resolve_checkpoint(args.checkpoint), args.out, gate_clips=clips)
    manifest = json.loads(path.read_text())
    parity = manifest["parity"]
    size = sum(entry["size"] for entry in manifest["files"].values()) / 1e6
    print(
        f"optimum {size:7.1f} MB  loaded by {parity['loader']}: WER {parity['wer']:.2f} % (PyTorch "
        f"{parity['pytorch_wer']:.2f} %), {parity['same_text_as_pytorch']}/{len(parity['clips'])} clips as PyTorch"
    )
    print(path)
    return 0


def _candidates(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of candidates (e.g. 16), or 0 for none")
    return int(value)


def _vocab(value: str) -> str | int:
    if value == "full":
        return value
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: use full or a positive number of tokens")
    return size


def parity_config(args: argparse.Namespace):
    """The ParityConfig the flags ask for; unset flags keep ParityConfig's defaults."""
    from .parity import DEFAULT_CLIPS, ParityConfig

    overrides: dict = {"clips": tuple(args.clips.split(",")) if args.clips else DEFAULT_CLIPS}
    overrides["wer_budget"] = args.wer_budget
    if args.parity_set == "clips7":
        overrides["wer_sets"] = ()
    if args.parity_max_clips is not None:
        overrides["max_clips_per_set"] = args.parity_max_clips
    if args.min_token_agreement is not None:
        overrides["min_token_agreement"] = args.min_token_agreement
    return ParityConfig(**overrides)


def _evidence(parity: dict) -> str:
    """fp32: the logit diff; quantized: pooled and per-set WER and token agreement, on how many words."""
    if not parity:
        return "-"
    diff = parity.get("max_logit_diff")
    head = f"logit diff {diff:.2e}  " if diff is not None else ""
    per_set = ", ".join(f"{name} {s['wer']:.1f}" for name, s in (parity.get("sets") or {}).items())
    return (
        f"{head}WER {parity['wer']:5.2f} on {parity.get('words', 0)} words ({per_set})  "
        f"agreement {parity['token_agreement']:.3f}  gate {parity.get('seconds') or 0:.0f} s"
    )


def _rels(variant: dict) -> list[str]:
    from edge_askd_runtime.transcriber import variant_files

    return variant_files(variant) if variant.get("files") else []
