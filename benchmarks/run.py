"""`edge-askd bench`: every candidate and peer measured side by side, interleaved, in one run."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_askd_runtime.atomic import atomic_write_json
from edge_askd_runtime.audio import SAMPLE_RATE, load_audio
from edge_askd_runtime.scoring import wer

from .bandwidth import copy_bandwidth_gbs, floor_ms_per_token
from .host import describe_host
from .worker import Worker

SCHEMA_VERSION = 1
# A timed request waits this long after the previous candidate's: OpenMP runtimes (CTranslate2's, PyTorch's) keep
# their threads spinning ~200 ms after a call (KMP_BLOCKTIME), so the next candidate in the interleave otherwise
# shares the cores with them. Measured (Intel Xeon, 2 cores): the first candidate, run right after
# faster-whisper, took 160 vs 89 ms for a 5 s clip that the same graphs in another export took later in the
# order, its numpy front end included (12 vs 4 ms).
SETTLE_S = 0.3
DEFAULT_PEERS = (
    "pytorch:teacher:base",
    "faster-whisper:base:int8",
    "faster-whisper:base:float32",
    "faster-whisper:tiny.en:int8",
)


@dataclass
class BenchConfig:
    candidates: list[str]
    lengths_s: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0, 30.0])
    repeats: int = 5
    threads: int = 2
    out_dir: Path = Path("bench-results")
    dev_set: str = "real-clips"


@dataclass
class DevClip:
    name: str
    audio: np.ndarray
    text: str


def dev_clips() -> list[DevClip]:
    """The real recorded clips with references (grows with the data pipeline's dev sets)."""
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip

    return [DevClip(name, load_audio(fetch_clip(name)), clip.text) for name, clip in REAL_CLIPS.items()]


def length_clips(clips: list[DevClip], lengths_s: list[float]) -> dict[float, np.ndarray]:
    """Real speech cut to each length from the clips laid end to end (short gaps between them)."""
    gap = np.zeros(SAMPLE_RATE // 4, dtype=np.float32)
    stream = np.concatenate([x for c in clips for x in (c.audio, gap)])
    while len(stream) < max(lengths_s) * SAMPLE_RATE:
        stream = np.concatenate([stream, stream])
    return {length: stream[: int(length * SAMPLE_RATE)] for length in lengths_s}


def _median_ms(results: list[dict], key: str) -> float | None:
    values = [r[key] * 1000 for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_benchmark(config: BenchConfig, progress=print) -> dict:
    progress(f"memory bandwidth ({config.threads} threads)")
    bandwidth = copy_bandwidth_gbs(config.threads)  # before any worker loads: the host is quiet
    clips = dev_clips()
    by_length = length_clips(clips, config.lengths_s)
    workers: dict[str, Worker] = {}
    missing: dict[str, str] = {}
    first_result: dict[str, float] = {}
    for spec in config.candidates:
        progress(f"loading {spec}")
        worker = Worker(spec, config.threads)
        if not worker.ready["ok"]:
            missing[spec] = worker.ready["error"]
            progress(f"  not available: {worker.ready['error']}")
            continue
        t0 = time.perf_counter()
        worker.transcribe(by_length[min(config.lengths_s, key=lambda s: abs(s - 5.0))])  # cold first call
        first_result[spec] = worker.ready["load_s"] + time.perf_counter() - t0
        workers[spec] = worker

    runs: dict[tuple[str, float], list[dict]] = {(s, length): [] for s in workers for length in config.lengths_s}
    for worker in workers.values():  # warm-up
        for audio in by_length.values():
            worker.transcribe(audio)
    order = list(workers)
    for rep in range(config.repeats):
        progress(f"repeat {rep + 1}/{config.repeats}")
        for round_, (length, audio) in enumerate(by_length.items()):
            # Interleaved, so a slow moment hits every candidate alike; and rotated, so no candidate always runs
            # right after the same one (whose threads may still hold the cores, see SETTLE_S).
            shift = (rep * len(by_length) + round_) % len(order)
            for spec in order[shift:] + order[:shift]:
                time.sleep(SETTLE_S)
                runs[(spec, length)].append(workers[spec].transcribe(audio))

    accuracy = {}
    for spec, worker in workers.items():
        progress(f"WER of {spec} on {len(clips)} real clips")
        hyps = [worker.transcribe(c.audio)["text"] for c in clips]
        accuracy[spec] = {"wer": wer([c.text for c in clips], hyps), "n_clips": len(clips)}
    peaks = {spec: worker.close() for spec, worker in workers.items()}

    rows = []
    for spec, worker in workers.items():
        info = worker.ready["info"]
        for length in config.lengths_s:
            results = runs[(spec, length)]
            totals = [r["total_s"] * 1000 for r in results]
            tokens = statistics.median([r["n_tokens"] for r in results])
            e2e = statistics.median(totals)
            enc = _median_ms(results, "encoder_s")
            front = _median_ms(results, "front_end_s")
            decode = _median_ms(results, "decoder_s")
            if decode is None and enc is not None:  # a peer that does not time its decoder: what is left of e2e
                decode = max(e2e - enc - (front or 0.0), 0.0)
            rest = max(e2e - enc - (front or 0.0) - decode, 0.0) if enc is not None and decode is not None else None
            # Amortised over the generated tokens: the prompt's decoder calls are in `decode` too.
            per_token = decode / tokens if decode is not None and tokens else None
            floor = floor_ms_per_token(info.get("decoder_bytes"), bandwidth)
            rows.append(
                {
                    "candidate": spec,
                    **info,
                    "threads": config.threads,
                    "audio_s": length,
                    "load_s": worker.ready["load_s"],
                    "first_result_s": first_result[spec],
                    "e2e_ms": _summary(totals),
                    "front_end_ms": front,
                    "encoder_ms": enc,
                    "decode_ms": decode,
                    "rest_ms": rest,
                    "tokens": tokens,
                    "ms_per_token": per_token,
                    "decoder_bytes": info.get("decoder_bytes"),
                    "floor_ms_per_token": floor,
                    "x_of_floor": per_token / floor if per_token is not None and floor else None,
                    "rtf": e2e / 1000 / length,
                    "peak_rss_mb": peaks[spec],
                    "size_mb": info["size_bytes"] / 1e6,
                    "wer": accuracy[spec]["wer"],
                    "wer_clips": accuracy[spec]["n_clips"],
                    "dev_set": config.dev_set,
                }
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {**describe_host(), "copy_bandwidth_gbs": bandwidth},
        "config": {**asdict(config), "out_dir": str(config.out_dir)},
        "rows": rows,
        "missing": missing,
    }


def write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_json(path, data)
