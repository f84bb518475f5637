"""What the prompt in one call and the filled-slot cache save: one export's decode time in each way of calling it.

    python -m edge_askd_bench.decoder_calls --model EXPORT_DIR [--lengths 3,5,10] [--repeats 7] [--threads 2]

For every ONNX Runtime / OpenVINO variant of the export whose decoder takes several tokens and a dynamic cache
(`io.multi_token`, `io.dynamic_cache`), the bench's real speech cut to each length is encoded once, then decoded
greedily in three ways, interleaved: the prompt in one call and only the filled cache slots (the runtime's way),
one token per call with the filled slots, and one token per call with all 448 slots (TFLite's way and that of
older exports). Prints median decode ms, decoder calls and tokens per way, and where the decode time goes: inside
the backend's decoder calls (`run_decoder_step`: the graph and the adapter's feeds) or in the loop around them
(the cache slices, the token rules), and the first call (the prompt's, in the runtime's way) against the others.
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
        calls = _time_decoder_calls(tr.backend)
        for length, audio in audio_by_length.items():
            cross = tr.backend.run_encoder(tr.mel(audio))
            times: dict[str, list[tuple[float, float, float, float]]] = {way: [] for way in WAYS}
            results = {}
            for _ in range(repeats):
                for way, (multi_token, dynamic_cache) in WAYS.items():
                    tr.backend.multi_token, tr.backend.dynamic_cache = multi_token, dynamic_cache
                    calls.clear()
                    start = time.perf_counter()
                    results[way] = greedy_decode(tr.backend, cross, tr.settings, length, tr._cache)
                    total = time.perf_counter() - start
                    others = statistics.median(calls[1:]) if len(calls) > 1 else 0.0
                    times[way].append((total, sum(calls), calls[0], others))
            for way in WAYS:
                decode, backend_s, first, other = (statistics.median(t[i] for t in times[way]) for i in range(4))
                rows.append(
                    {
                        "variant": variant["name"],
                        "length_s": length,
                        "way": way,
                        "decode_ms": 1000 * decode,
                        "backend_ms": 1000 * backend_s,
                        "loop_ms": 1000 * max(decode - backend_s, 0.0),
                        "first_call_ms": 1000 * first,
                        "call_ms": 1000 * other,
                        "calls": results[way].steps,
                        "tokens": len(results[way].tokens),
                    }
                )
    return rows


def _time_decoder_calls(backend) -> list[float]:
    """Wrap `backend.run_decoder_step` to append each call's seconds to the returned list (cleared by the caller)."""
    calls: list[float] = []
    run_step = backend.run_decoder_step

    def timed_step(*args):
        start = time.perf_counter()
        try:
            return run_step(*args)
        finally:
            calls.append(time.perf_counter() - start)

    backend.run_decoder_step = timed_step
    return calls


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
    print(
        "| variant | audio | way | decode ms | in the backend ms | loop ms | first call ms | other calls ms | calls "
        "| tokens |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['variant']} | {r['length_s']:g} s | {r['way']} | {r['decode_ms']:.1f} | {r['backend_ms']:.1f} | "
            f"{r['loop_ms']:.1f} | {r['first_call_ms']:.2f} | {r['call_ms']:.2f} | {r['calls']} | {r['tokens']} |"
        )
    if not rows:
        print(f"{args.model}: no variant takes several tokens and a dynamic cache; re-export it")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
