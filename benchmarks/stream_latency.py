"""End-of-speech to final-text latency through the push-audio stream, fed in real time like a microphone.

    python -m edge_askd_bench.stream_latency --model EXPORT_DIR [--endpoint-ms 180] [--speculate-ms 30]
                                             [--tail-ms 60] [--threads 2] [--backend B] [--precision P] [--json OUT]

The 7 parity clips, each followed by 1.5 s of silence, are pushed in 30 ms blocks at the pace of real time
from a capture thread (as PortAudio's callback does), and the stream runs on the main thread (as `listen`
does). Per final line: the latency from the arrival of its last speech block to its text, split into the
endpoint wait (the silence that ends the line), the time that silence waited behind earlier work, and the
compute after it; printed as medians with the WER of the lines. Speed figures come from this script, not
from timed tests.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

BLOCK_S = 0.03
GAP_S = 1.5


def _feed(audio: np.ndarray, blocks: queue.Queue, rate: int = 16000) -> None:
    """Put 30 ms blocks on the queue at real time, each stamped with its arrival (perf_counter)."""
    n = int(rate * BLOCK_S)
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(audio), n)):
        due = start + (i + 1) * BLOCK_S  # a block is available once all of its samples have been "recorded"
        time.sleep(max(0.0, due - time.perf_counter()))
        blocks.put((audio[offset : offset + n], time.perf_counter()))
    blocks.put(None)


def measure(
    transcriber, clips: list[tuple[np.ndarray, str]], endpoint_ms: int, speculate_ms: int, tail_ms: int
) -> dict:
    from edge_askd_runtime.scoring import wer
    from edge_askd_runtime.stream import LineCompleted, StreamConfig

    gap = np.zeros(int(GAP_S * 16000), np.float32)
    audio = np.concatenate([x for clip, _ in clips for x in (clip, gap)])
    stream = transcriber.stream(StreamConfig(endpoint_ms=endpoint_ms, speculate_ms=speculate_ms, tail_ms=tail_ms))
    blocks: queue.Queue = queue.Queue()
    feeder = threading.Thread(target=_feed, args=(audio, blocks), daemon=True)
    feeder.start()
    while (item := blocks.get()) is not None:
        stream.add_audio(item[0], arrived=item[1], partial_ok=blocks.qsize() <= 2)
    stream.finish()
    feeder.join()
    lines = [e for e in stream.lines if isinstance(e, LineCompleted)]

    def median(key: str) -> float:
        values = sorted(getattr(line, key) for line in lines)
        return round(values[len(values) // 2], 1) if values else float("nan")

    return {
        "endpoint_ms": endpoint_ms,
        "speculate_ms": speculate_ms,
        "tail_ms": tail_ms,
        "lines": len(lines),
        "utterances": len(clips),
        "median_latency_ms": median("latency_ms"),
        "median_endpoint_wait_ms": median("endpoint_ms"),
        "median_behind_ms": median("behind_ms"),
        "median_compute_ms": median("compute_ms"),
        "max_latency_ms": round(max((line.latency_ms for line in lines), default=float("nan")), 1),
        "latencies_ms": [round(line.latency_ms, 1) for line in lines],
        "wer": round(wer([" ".join(t for _, t in clips)], [" ".join(line.text for line in lines)]), 4),
    }


def main(argv: list[str] | None = None) -> int:
    from edge_askd_runtime.stream import StreamConfig

    default = StreamConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="an export directory (or teacher:NAME / a checkpoint)")
    p.add_argument("--endpoint-ms", default=str(default.endpoint_ms), help="comma list: silence that ends a line (ms)")
    p.add_argument(
        "--speculate-ms", default=str(default.speculate_ms), help="comma list: pause before the speculative final (ms)"
    )
    p.add_argument(
        "--tail-ms", default=str(default.tail_ms), help="comma list: audio kept after the last speech frame (ms)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from edge_askd.load import load_transcriber
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_export.parity import DEFAULT_CLIPS
    from edge_askd_runtime.audio import load_audio

    transcriber = load_transcriber(args.model, args.threads, backend=args.backend, precision=args.precision)
    clips = [(load_audio(fetch_clip(name)), REAL_CLIPS[name].text) for name in DEFAULT_CLIPS]
    transcriber.transcribe(clips[0][0])  # warm-up: first-run allocations are not latency
    rows = [
        measure(transcriber, clips, int(ms), int(spec), int(tail))
        for ms in args.endpoint_ms.split(",")
        for spec in args.speculate_ms.split(",")
        for tail in args.tail_ms.split(",")
    ]
    print(f"model {args.model} ({getattr(transcriber, 'describe', dict)()}), {args.threads} threads")
    head = "endpoint | speculate | tail | lines / utterances | median latency | endpoint wait | behind | compute | max"
    print(f"| {head} | WER |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['endpoint_ms']} ms | {r['speculate_ms']} ms | {r['tail_ms']} ms | {r['lines']} / {r['utterances']} "
            f"| {r['median_latency_ms']} ms "
            f"| {r['median_endpoint_wait_ms']} ms | {r['median_behind_ms']} ms | {r['median_compute_ms']} ms "
            f"| {r['max_latency_ms']} ms | {r['wer']:.1%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
