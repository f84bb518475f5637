"""Peak memory of transcribing one long file, which must not grow with the file's length.

    python -m edge_askd_bench.long_file EXPORT_DIR [--minutes 60] [--rate 48000] [--channels 2]
                                        [--backend B] [--precision P] [--json OUT]

Writes a recording of real speech (the real clips end to end with pauses, repeated) of that length, rate and
channel count to a temporary directory block by block, runs `edge-askd transcribe` on it in a fresh process,
and prints that process's peak resident memory, its wall time and the real-time factor. An hour of 48 kHz
stereo is ~1.4 GB as float32 when read whole; the runtime reads and resamples it in blocks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GAP_S = 0.8


def write_long_recording(path: Path, minutes: float, rate: int, channels: int) -> tuple[float, int]:
    """Real clips laid end to end with pauses until `minutes`; returns (seconds, reference words written)."""
    import soundfile as sf
    import soxr

    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_runtime.audio import load_audio

    gap = np.zeros(int(GAP_S * 16000), np.float32)
    loop = np.concatenate([x for name in REAL_CLIPS for x in (load_audio(fetch_clip(name)), gap)])
    loop = soxr.resample(loop, 16000, rate) if rate != 16000 else loop
    words_per_loop = sum(len(clip.text.split()) for clip in REAL_CLIPS.values())
    target = int(minutes * 60 * rate)
    written = loops = 0
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        while written < target:
            block = loop[: target - written]
            f.write(np.repeat(block[:, None], channels, axis=1))
            written += len(block)
            loops += 1
    return written / rate, loops * words_per_loop


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default=None, help="onnxruntime, openvino or litert (default: the export's first)")
    p.add_argument("--precision", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edge-askd-long-") as tmp:
        path = Path(tmp) / f"long-{args.minutes:g}min-{args.rate}-{args.channels}ch.wav"
        seconds, words = write_long_recording(path, args.minutes, args.rate, args.channels)
        size_mb = path.stat().st_size / 1e6
        cmd = [sys.executable, "-m", "edge_askd.cli", "transcribe", str(path), "--model", str(args.export_dir)]
        cmd += ["--threads", str(args.threads), "--format", "json"]
        cmd += ["--backend", args.backend] if args.backend else []
        cmd += ["--precision", args.precision] if args.precision else []
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "transcribe failed", file=sys.stderr)
            return 1
        # ru_maxrss of waited-for children, in KiB on Linux: this one child's peak.
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    row = {
        "backend": args.backend or "auto",
        "precision": args.precision or "auto",
        "audio_minutes": round(seconds / 60, 2),
        "rate": args.rate,
        "channels": args.channels,
        "file_mb": round(size_mb, 1),
        "float32_whole_file_mb": round(seconds * args.rate * args.channels * 4 / 1e6, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "wall_s": round(wall, 1),
        "rtf": round(wall / seconds, 4),
        "words_out": len(result["text"].split()),
        "reference_words": words,
        "segments": len(result["segments"]),
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
