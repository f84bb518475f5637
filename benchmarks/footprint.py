"""Cold-start footprint of each variant of an export: load time, first-result latency and peak memory.

    python -m edge_askd_bench.footprint EXPORT_DIR [--backends onnxruntime,openvino,litert] [--precisions int8]
                                        [--clip jfk] [--json OUT]

Every (backend, precision) variant runs in a fresh Python process, so the runtime's imports, the graph load and
the first (cold) transcription are all counted, and the peak resident memory is that variant's alone. The child
must stay torch-free, as on a board: it fails loudly if torch or transformers got imported.

This module imports only the standard library at the top: the child runs it with `-m`, and anything imported
here would be charged to the baseline instead of the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .memory import current_rss_mb, peak_rss_mb

SCHEMA_VERSION = 1
RESULT_MARK = "EDGE_ASKD_FOOTPRINT "
FORBIDDEN_MODULES = ("torch", "transformers")
BACKENDS = ("onnxruntime", "openvino", "litert")
FORMAT_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert"}


@dataclass
class FootprintRow:
    backend: str
    precision: str
    ok: bool
    load_s: float | None = None  # import edge_askd_runtime + Transcriber(...) ready, after numpy is imported
    process_to_ready_s: float | None = None  # from the parent's spawn: interpreter start + numpy + load
    numpy_import_s: float | None = None
    first_transcription_s: float | None = None  # the first (cold) transcribe() of the clip, file read included
    audio_s: float | None = None
    baseline_rss_mb: float | None = None  # resident memory after a bare `import numpy`
    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None  # VmHWM after the first transcription
    model_rss_mb: float | None = None  # peak_rss_mb - baseline_rss_mb: what the runtime and the model cost
    size_mb: float | None = None  # the variant's files on disk
    text: str | None = None
    wer: float | None = None
    error: str | None = None


def _child(export_dir: str, backend: str, precision: str, clip: str, threads: int | None, spawned_at: float) -> int:
    """The measured process: numpy baseline, then the runtime's cold load and first transcription."""
    t = time.perf_counter()
    import numpy  # noqa: F401  (the baseline every runtime pays)

    numpy_import_s = time.perf_counter() - t
    baseline = current_rss_mb()
    t0 = time.perf_counter()
    from edge_askd_runtime import Transcriber

    transcriber = Transcriber(export_dir, backend=backend, precision=precision, threads=threads)
    load_s = time.perf_counter() - t0
    ready_wall = time.time()
    rss_after_load = current_rss_mb()
    t1 = time.perf_counter()
    result = transcriber.transcribe(clip)
    first_s = time.perf_counter() - t1
    peak = peak_rss_mb()
    leaked = sorted(name for name in FORBIDDEN_MODULES if name in sys.modules)
    if leaked:
        print(f"edge-askd footprint: {', '.join(leaked)} imported in the device runtime's process", file=sys.stderr)
        return 3
    row = {
        "load_s": load_s,
        "process_to_ready_s": ready_wall - spawned_at,
        "numpy_import_s": numpy_import_s,
        "first_transcription_s": first_s,
        "audio_s": result.audio_seconds,
        "baseline_rss_mb": baseline,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": peak,
        "model_rss_mb": peak - baseline,
        "size_mb": transcriber.describe()["size_bytes"] / 1e6,
        "text": result.text,
    }
    print(RESULT_MARK + json.dumps(row), flush=True)
    return 0


def variants(export_dir: Path, backends: list[str], precisions: list[str] | None) -> list[tuple[str, str, bool]]:
    """(backend, precision, runtime installed) for each valid variant of the manifest, in manifest order."""
    from edge_askd_runtime.backends import runtime_available
    from edge_askd_runtime.transcriber import read_manifest

    rows = []
    for variant in read_manifest(export_dir)["variants"]:
        backend = FORMAT_BACKEND.get(variant["format"])
        if not variant.get("valid") or backend not in backends:
            continue
        if precisions and variant["precision"] not in precisions:
            continue
        rows.append((backend, variant["precision"], runtime_available(variant["format"])))
    return rows


def measure(
    export_dir: Path, backend: str, precision: str, clip: Path, threads: int | None = None, timeout_s: float = 600
) -> FootprintRow:
    """One variant in a fresh interpreter; a failure becomes a row with `error`, never an exception."""
    command = [sys.executable, "-m", "edge_askd_bench.footprint", "--child", str(export_dir), backend, precision]
    command += [str(clip), str(threads or 0), repr(time.time())]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return FootprintRow(backend, precision, ok=False, error=f"timed out after {timeout_s:.0f} s")
    marked = [line[len(RESULT_MARK) :] for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not marked:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return FootprintRow(backend, precision, ok=False, error=tail)
    return FootprintRow(backend, precision, ok=True, **json.loads(marked[-1]))


def resolve_clip(clip: str) -> tuple[Path, str | None]:
    """An audio file path, or the name of a real clip (fetched into the cache) -> (path, reference text)."""
    if Path(clip).is_file():
        return Path(clip), None
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip

    return Path(fetch_clip(clip)), REAL_CLIPS[clip].text


def score(row: FootprintRow, reference: str | None) -> None:
    if not (row.ok and reference):
        return
    try:
        from edge_askd_runtime.scoring import wer
    except ImportError:  # scoring needs edge-askd[eval]; a board may not have it
        return
    try:
        row.wer = wer([reference], [row.text or ""])
    except ImportError:
        pass


def table(rows: list[FootprintRow]) -> str:
    header = (
        f"{'backend':<12} {'prec':<5} {'load s':>7} {'ready s':>8} {'first s':>8} {'base MB':>8} "
        f"{'peak MB':>8} {'model MB':>9} {'disk MB':>8} {'WER':>6}  text"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if not r.ok:
            lines.append(f"{r.backend:<12} {r.precision:<5} failed: {r.error}")
            continue
        wer = f"{r.wer * 100:5.1f}%" if r.wer is not None else "     -"
        lines.append(
            f"{r.backend:<12} {r.precision:<5} {r.load_s:7.2f} {r.process_to_ready_s:8.2f} "
            f"{r.first_transcription_s:8.2f} {r.baseline_rss_mb:8.0f} {r.peak_rss_mb:8.0f} {r.model_rss_mb:9.0f} "
            f"{r.size_mb:8.1f} {wer}  {(r.text or '')[:48]}"
        )
    return "\n".join(lines)


def run(
    export_dir: Path,
    backends: list[str],
    precisions: list[str] | None,
    clip: str,
    threads: int | None = None,
    json_out: Path | None = None,
) -> dict:
    """Measure every matching variant one after another (never in parallel: they would share the CPU)."""
    from edge_askd_runtime.errors import EdgeAskdError

    clip_path, reference = resolve_clip(clip)
    found = variants(export_dir, backends, precisions)
    if not found:
        raise EdgeAskdError(f"{export_dir}: no valid variant for backends {','.join(backends)}; see its manifest")
    rows, skipped = [], []
    for backend, precision, installed in found:
        if not installed:
            skipped.append(f"{backend}/{precision} (runtime not installed)")
            continue
        row = measure(export_dir, backend, precision, clip_path, threads)
        score(row, reference)
        rows.append(row)
    result = {
        "schema_version": SCHEMA_VERSION,
        "export_dir": str(export_dir),
        "clip": clip,
        "threads": threads,
        "host": _host(),
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
    }
    if json_out is not None:
        from edge_askd_runtime.atomic import atomic_write_text

        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table(rows))
    for line in skipped:
        print(f"skipped {line}")
    return result


def _host() -> dict:
    try:
        from .host import describe_host

        return describe_host()
    except Exception as exc:  # the host description is context; a missing probe must not lose the figures
        return {"error": f"{type(exc).__name__}: {exc}"}


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        export_dir, backend, precision, clip, threads, spawned_at = argv[1:7]
        return _child(export_dir, backend, precision, clip, int(threads) or None, float(spawned_at))
    parser = argparse.ArgumentParser(prog="python -m edge_askd_bench.footprint", description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", type=Path, help="an export directory (with manifest.json)")
    parser.add_argument("--backends", type=_csv, default=list(BACKENDS), help="comma list (default: all three)")
    parser.add_argument("--precisions", type=_csv, default=None, help="comma list, e.g. int8,fp32 (default: all)")
    parser.add_argument("--clip", default="jfk", help="a real clip name or an audio file (default: jfk)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the export's target)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here (atomically)")
    args = parser.parse_args(argv)
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    from edge_askd_runtime.errors import EdgeAskdError

    try:
        result = run(args.export_dir, args.backends, args.precisions, args.clip, args.threads, args.json)
    except EdgeAskdError as exc:
        print(f"edge-askd footprint: error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(row["ok"] for row in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
