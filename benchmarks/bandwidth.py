"""The per-token floor: how fast a decoder step could be if it only had to stream its weights from memory.

A greedy decoder step multiplies one token's activations by every decoder weight (the tied output projection
included), so at batch 1 it is bound by memory bandwidth, not arithmetic: the weights are far larger than the
caches and are read once per token. floor = decoder weight bytes / this machine's copy bandwidth. The bench prints
measured ms/token as "x of floor", so a result on any board says how close it is to the physical limit.

What the floor leaves out, so it is a lower bound: the KV caches (base: the self-attention cache is up to ~11 MB
at fp32 per step, the cross-attention K/V ~1.2 MB per second of audio), activations, and runtimes that widen
weights as they load them (fp16 weights run as f32 on CPUs without native fp16 read twice the file's bytes).

    python -m edge_askd_bench.bandwidth [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

COPY_MB = 256  # far above any L3 cache of the boards we target (Pi 5: 2 MB; EPYC: 32 MB per CCD)


def copy_bandwidth_gbs(threads: int = 1, size_mb: int = COPY_MB, repeats: int = 5) -> float:
    """Best-of-`repeats` read+write bandwidth of a large array copy in GB/s (STREAM "copy" counts both), split
    over `threads` threads as the runtimes split a matmul (numpy releases the GIL while it copies)."""
    n = size_mb * 1024 * 1024 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(max(threads, 1))]
    best = float("inf")
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        for _ in range(repeats + 1):  # the first pass faults the pages in
            t0 = time.perf_counter()
            list(pool.map(lambda s: np.copyto(dst[s], src[s]), parts))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def floor_ms_per_token(decoder_bytes: int | None, bandwidth_gbs: float | None) -> float | None:
    """The ms one decoder step needs to stream `decoder_bytes` once at `bandwidth_gbs`. The copy figure counts
    reads and writes, which a copy overlaps, so it is the optimistic (floor-lowering) choice."""
    if not decoder_bytes or not bandwidth_gbs:
        return None
    return decoder_bytes / (bandwidth_gbs * 1e9) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    print(f"copy bandwidth, {args.threads} threads: {copy_bandwidth_gbs(args.threads):.1f} GB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
