"""The weight-only int8 decoder's block size: speed and distance from fp32, each block size beside the others.

    python -m edge_askd_bench.decoder_blocks EXPORT_DIR [--blocks 128,64,32,16] [--coarse 8,16,16/128] [--max-clips 0]
                                             [--repeats 7] [--threads 2] [--json OUT]

MatMulNBits (accuracy_level 4) quantizes the decoder's weights in blocks along K and its activations per block
too, so the block size trades per-call speed against the logits' precision. EXPORT_DIR is an export with a valid
onnx-fp32 variant: its fp32 encoder computes every clip's cross K/V once, and each decoder (fp32, then one per
block size, built by `onnx_export.quantize_int8` as the exporter builds it) decodes them, so the table isolates
the decoder. Accuracy per set (the 7 parity clips, clean-en, telephone-dev): greedy token agreement with the fp32
decoder (aligned, as the parity gate counts it) and WER. Speed: ms per decoder call at 5 and 10 s of real speech,
the decoders interleaved in one process (median of --repeats). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def measure(
    export: Path,
    blocks: list[int],
    max_clips: int,
    repeats: int,
    threads: int,
    coarse: tuple[tuple[int, int, int], ...] = (),
) -> list[dict]:
    """coarse: (candidates, the coarse pass's block size, its bits) per coarse-head decoder."""
    from edge_askd_export import onnx_export
    from edge_askd_runtime.audio import SAMPLE_RATE
    from edge_askd_runtime.decoding import allocate_cache, greedy_decode
    from edge_askd_runtime.scoring import token_agreement, wer
    from edge_askd_runtime.transcriber import Transcriber

    from .encoder_schemes import evaluation_sets, ort_session
    from .run import dev_clips, length_clips

    tr = Transcriber(export, backend="onnxruntime", precision="fp32", threads=threads)
    fp32_decoder = tr.backend.spec.decoder
    cache = allocate_cache([tuple(s) for s in tr.variant["io"]["cache_shapes"]])
    with tempfile.TemporaryDirectory(prefix="decoder-blocks-") as tmp:
        files = {"fp32": fp32_decoder}
        for block in blocks:
            dst = Path(tmp) / f"decoder.block{block}.onnx"
            files[f"block {block}"] = onnx_export.quantize_int8(fp32_decoder, dst, scheme="weight_only", block=block)
        layers_block = onnx_export.DECODER_WEIGHT_ONLY_BLOCK  # what the exporter gives a decoder's layers
        for candidates, head_block, bits in coarse:
            head = onnx_export.CoarseHead(candidates=candidates, block=head_block, bits=bits)
            name = f"block {layers_block}, head {bits}-bit/{head_block} top {candidates}"
            dst = Path(tmp) / f"decoder.coarse{candidates}-{head_block}-{bits}.onnx"
            files[name] = onnx_export.quantize_int8(
                fp32_decoder, dst, scheme="weight_only", block=layers_block, coarse_head=head
            )
        sessions = {name: ort_session(path, threads) for name, path in files.items()}
        rows = {name: {"decoder": name, "file_mb": round(p.stat().st_size / 2**20, 1)} for name, p in files.items()}

        def decode(name: str, audio, cross) -> tuple[list[int], float]:
            """(tokens, seconds per decoder call) with this decoder behind the runtime's own loop."""
            tr.backend.decoder = sessions[name]
            start = time.perf_counter()
            result = greedy_decode(tr.backend, cross, tr.settings, len(audio) / SAMPLE_RATE, cache)
            return result.tokens, (time.perf_counter() - start) / max(1, result.steps)

        for length, audio in length_clips(dev_clips(), [5.0, 10.0]).items():
            cross = tr.backend.run_encoder(tr.mel(audio))
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(repeats):
                for name in sessions:
                    times[name].append(decode(name, audio, cross)[1])
            for name, values in times.items():
                rows[name][f"ms_per_call_{length:.0f}s"] = round(1000 * statistics.median(values), 2)

        for set_name, clips in evaluation_sets(max_clips).items():
            crosses = [tr.backend.run_encoder(tr.mel(c.audio)) for c in clips]
            pairs = list(zip(clips, crosses, strict=True))
            tokens = {name: [decode(name, c.audio, x)[0] for c, x in pairs] for name in files}
            for name, ids in tokens.items():
                rows[name][set_name] = {
                    "clips": len(clips),
                    "token_agreement": round(token_agreement(ids, tokens["fp32"]), 4),
                    "wer": round(100 * wer([c.text for c in clips], [tr.detokenizer.decode(t) for t in ids]), 2),
                }
    return list(rows.values())


def _coarse_spec(item: str) -> tuple[int, int, int]:
    """ "16" -> (16, the default block, the default bits); "16/128" -> (16, 128, default bits); "16/128/2"."""
    from edge_askd_export.onnx_export import CoarseHead

    candidates, block, bits, *rest = [*item.split("/"), "", ""]
    if any(rest):
        raise ValueError(item)
    return int(candidates), int(block or CoarseHead.block), int(bits or CoarseHead.bits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export", type=Path, help="an export directory with a valid onnx-fp32 variant")
    p.add_argument("--blocks", default="128,64,32,16", help="block sizes along K (powers of two, >= 16)")
    p.add_argument("--max-clips", type=int, default=0, help="clips per real set (evenly spaced); 0: all")
    p.add_argument(
        "--coarse",
        default="",
        help="decoders whose output projection is a low-bit pass with its top K rescored exactly from the int8 "
        "rows (onnx_export.CoarseHead): K, K/BLOCK or K/BLOCK/BITS (the pass's block size and bits, 2 or 4; "
        "defaults: the exporter's), e.g. 8,16,16/128,16/128/2",
    )
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        blocks = [int(b) for b in args.blocks.split(",") if b]
    except ValueError:
        p.error(f"--blocks {args.blocks!r}: give block sizes like 128,32")
    if any(b < 16 or b & (b - 1) for b in blocks):
        p.error(f"--blocks {args.blocks!r}: each a power of two, at least 16")
    try:
        coarse = tuple(_coarse_spec(item) for item in args.coarse.split(",") if item)
    except ValueError:
        p.error(f"--coarse {args.coarse!r}: give candidate counts, each with an optional block and bits, like 16/128")
    if not blocks and not coarse:
        p.error("give --blocks or --coarse")
    if any(k < 1 or not 16 <= b <= 256 or b & (b - 1) or bits not in (2, 4) for k, b, bits in coarse):
        p.error(f"--coarse {args.coarse!r}: candidates >= 1, blocks 16 to 256 (powers of two), bits 2 or 4")
    from edge_askd_runtime.errors import EdgeAskdError

    try:
        rows = measure(args.export, blocks, args.max_clips, args.repeats, args.threads, coarse)
    except EdgeAskdError as exc:
        sys.exit(f"error: {exc}")
    from .encoder_schemes import print_table

    print_table(
        rows,
        ("decoder", "decoder"),
        ("ms/call 5 s", "ms/call 10 s"),
        lambda r: (str(r["ms_per_call_5s"]), str(r["ms_per_call_10s"])),
        lambda s: f"agree {s['token_agreement']:.4f}, WER {s['wer']:.2f} %",
        "Agreement against the fp32 decoder (fp32 encoder throughout); WER against the references.",
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
