"""What the prompt in one call and the filled-slot cache save: one export's decode time in each way of calling it.

    python -m edge_askd_bench.decoder_calls --model EXPORT_DIR [--lengths 3,5,10] [--repeats 7] [--threads 2]

For every ONNX Runtime / OpenVINO variant of the export whose decoder takes several tokens and a dynamic cache
(`io.multi_token`, `io.dynamic_cache`), the bench's real speech cut to each length is encoded once, then decoded
greedily in three ways, interleaved: the prompt in one call and only the filled cache slots (the runtime's way),
one token per call with the filled slots, and one token per call with all 448 slots (TFLite's way and that of
older exports). Prints median decode ms, decoder calls and tokens per way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from edge_askd_runtime.decoding import greedy_decode

from .run import dev_clips, length_clips

WAYS = {
    "one-call prompt, filled slots": (True, True),
    "stepwise prompt, filled slots": (False, True),
    "stepwise prompt, all 448 slots": (False, False),
}


def measure(export: Path, lengths: list[float], repeats: int, threads: int) -> list[dict]:
    from edge_askd_runtime import Transcriber
    from edge_askd_runtime.transcriber import read_manifest

    rows = []
    audio_by_length = length_clips(dev_clips(), lengths)
    for variant in read_manifest(export)["variants"]:
        if not (variant["valid"] and variant["io"].get("multi_token") and variant["io"].get("dynamic_cache")):
            continue
        backend = {"onnx": "onnxruntime", "openvino": "openvino"}[variant["format"]]
        tr = Transcriber(export, backend=backend, precision=variant["precision"], threads=threads)
        for length, audio in audio_by_length.items():
            cross = tr.backend.run_encoder(tr.mel(audio))
            times: dict[str, list[float]] = {way: [] for way in WAYS}
            results = {}
            for _ in range(repeats):
                for way, (multi_token, dynamic_cache) in WAYS.items():
                    tr.backend.multi_token, tr.backend.dynamic_cache = multi_token, dynamic_cache
                    start = time.perf_counter()
                    results[way] = greedy_decode(tr.backend, cross, tr.settings, length, tr._cache)
                    times[way].append(time.perf_counter() - start)
            for way in WAYS:
                rows.append(
                    {
                        "variant": variant["name"],
                        "length_s": length,
                        "way": way,
                        "decode_ms": 1000 * statistics.median(times[way]),
                        "calls": results[way].steps,
                        "tokens": len(results[way].tokens),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="an export directory (manifest.json)")
    p.add_argument("--lengths", default="3,5,10", help="seconds of real speech, comma-separated")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from edge_askd_runtime.errors import EdgeAskdError

    try:
        lengths = [float(x) for x in args.lengths.split(",")]
    except ValueError:
        p.error(f"--lengths {args.lengths!r}: use seconds, comma-separated (e.g. 3,5,10)")
    try:
        rows = measure(args.model, lengths, args.repeats, args.threads)
    except EdgeAskdError as exc:
        print(f"error: {exc}")
        return 2
    print("| variant | audio | way | decode ms | calls | tokens |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['length_s']:g} s | {r['way']} | {r['decode_ms']:.1f} | {r['calls']} | "
            f"{r['tokens']} |"
        )
    if not rows:
        print(f"{args.model}: no variant takes several tokens and a dynamic cache; re-export it")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
