"""Which int8 scheme for the encoder: speed and distance from fp32, each scheme beside the others.

    python -m edge_askd_bench.encoder_schemes CHECKPOINT EXPORT_DIR [--schemes smoothquant,dynamic,weight_only,
                                              openvino-weight-only,openvino-static,onnx-static-qdq,
                                              low-rank,low-rank-int8] [--low-rank-variance 0.99]
                                              [--calibration-clips 48]
                                              [--max-clips 40] [--repeats 9] [--threads 2] [--json OUT]

EXPORT_DIR is an export of CHECKPOINT with a valid onnx-fp32 variant: its encoder is the reference and its fp32
decoder decodes every scheme's cross K/V, so the table isolates the encoder. Each scheme is built here as the
exporter builds it (`onnx_export.quantize_int8`, `openvino_export`; smoothquant and openvino-static calibrated on
the real training recordings of `export/calibration.py`); the openvino-* schemes run in OpenVINO, the rest in
ONNX Runtime, so their speed is each runtime's. Speed: encoder ms at 5 and 10 s of real speech, the schemes
interleaved in one process (median of --repeats). Accuracy, per set (the 7 parity clips, clean-en,
telephone-dev; none used in calibration): cross K/V SNR against fp32 (dB, mean over clips and outputs), greedy
token agreement with fp32 (aligned, as the parity gate counts it) and WER. Prints a Markdown table; speed
figures come from this script, not from tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_askd_export.calibration import CALIBRATION_CLIPS

OPENVINO_SCHEMES = ("openvino-weight-only", "openvino-static")  # run by OpenVINO, beside the ONNX Runtime ones
# Tried for the exporter, not adopted (see docs/encoder-int8): built here only.
TRIED_SCHEMES = ("onnx-static-qdq", "low-rank", "low-rank-int8")


def build_schemes(
    checkpoint: Path,
    fp32_encoder: Path,
    mel_of,
    schemes: list[str],
    out: Path,
    attention_heads: int,
    low_rank_variance: float = 0.99,
    notes: dict | None = None,
    calibration_clips: int = CALIBRATION_CLIPS,
) -> dict[str, Path]:
    """{scheme: its encoder file}, each made by the exporter's own functions (smoothquant and openvino-static:
    calibrated on export/calibration.py's recordings, through `mel_of`, the runtime's features).
    openvino-weight-only is today's openvino-int8 encoder (NNCF int8 weights, float activations). low-rank: the
    LiteASR factorisation (low_rank.py) keeping `low_rank_variance`, fp32; low-rank-int8: that, quantized
    "dynamic". The exporter's own ONNX schemes get its fused kernels (`attention_heads`: the encoder's). `notes`
    receives {scheme: what a scheme records} (the low-rank ranks). `calibration_clips`: how many recordings
    calibrate (the exporter's count by default)."""
    from edge_askd_export import onnx_export, openvino_export
    from edge_askd_export.calibration import calibration_audio
    from edge_askd_export.pipeline import ENCODER_SCHEMES

    @functools.cache
    def calibration_mels() -> list:  # computed once for the calibrated schemes
        return [mel_of(a) for a in calibration_audio(calibration_clips)]

    @functools.cache
    def model():  # the checkpoint, loaded once for the schemes built from it
        from edge_askd_export.graphs import load_model

        return load_model(checkpoint)

    @functools.cache
    def maxima() -> dict:  # its SmoothQuant calibration, once for both smoothed schemes
        from edge_askd_export.smoothquant import activation_maxima

        return activation_maxima(model(), calibration_mels())

    @functools.cache
    def low_rank_fp32() -> Path:
        from edge_askd_export.onnx_export import export_encoder

        from .low_rank import low_rank_encoder, summary

        factored, ranks = low_rank_encoder(model(), calibration_mels(), low_rank_variance)
        if notes is not None:
            notes["low-rank"] = notes["low-rank-int8"] = {"variance": low_rank_variance, **summary(ranks)}
        return export_encoder(factored, out / "encoder.low-rank.onnx")

    files = {}
    for scheme in schemes:
        dst = out / f"encoder.{scheme}.onnx"
        if scheme == "smoothquant":
            from edge_askd_export.smoothquant import export_smoothquant_encoder

            export_smoothquant_encoder(model(), dst, maxima=maxima())
            files[scheme] = dst
        elif scheme == "onnx-static-qdq":
            files[scheme] = static_qdq_encoder(model(), maxima(), calibration_mels(), dst)
        elif scheme == "low-rank":
            files[scheme] = low_rank_fp32()
        elif scheme == "low-rank-int8":
            files[scheme] = onnx_export.quantize_int8(low_rank_fp32(), dst, scheme="dynamic")
        elif scheme == "openvino-weight-only":
            files[scheme] = openvino_export.convert(fp32_encoder, dst.with_suffix(".xml"), "int8")
        elif scheme == "openvino-static":
            xml = dst.with_suffix(".xml")
            files[scheme] = openvino_export.quantize_encoder_static(fp32_encoder, xml, calibration_mels())
        else:
            files[scheme] = onnx_export.quantize_int8(fp32_encoder, dst, scheme=scheme)
        if scheme in ENCODER_SCHEMES:
            onnx_export.fuse_encoder_kernels(files[scheme], attention_heads)
    return files


def static_qdq_encoder(model, maxima: dict, mels: list, dst: Path) -> Path:
    """ONNX Runtime's static int8 (QDQ): the SmoothQuant-ed encoder (as the smoothquant scheme smooths it), int8
    MatMuls with per-channel weights and per-tensor uint8 activation ranges calibrated (min/max) on `mels`, fc2
    (GELU's output, which smoothing cannot tame) left float, as OpenVINO's static scheme leaves it out. `maxima`:
    smoothquant.activation_maxima of `model` on the same mels."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edge_askd_export import onnx_export
    from edge_askd_export.smoothquant import smoothed_copy

    class Mels(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter({"mel": mel} for mel in mels)

        def get_next(self):
            return next(self._feeds, None)

    smoothed = dst.with_name(f"{dst.stem}.smoothed.fp32.onnx")
    onnx_export.export_encoder(smoothed_copy(model, maxima), smoothed)
    # The projections only (constant weights), fc2 left out: the attention's activation x activation MatMuls would
    # also be calibrated and held per clip, and ONNX Runtime's option to fold ranges every few clips
    # (CalibMaxIntermediateOutputs) drops them instead in 1.32.
    graph = onnx.load(str(smoothed), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    down = set(onnx_export.down_projections(smoothed))
    projections = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in down]
    quantize_static(
        str(smoothed),
        str(dst),
        Mels(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=projections,
        calibrate_method=CalibrationMethod.MinMax,
    )
    smoothed.unlink()
    return dst


def encoder_runner(path: Path, threads: int):
    """mel -> the encoder's outputs (cross K/V, in the graph's order), by ONNX Runtime or, for an IR, OpenVINO
    with the runtime's CPU settings."""
    if path.suffix == ".xml":
        from edge_askd_export.openvino_export import disable_telemetry

        disable_telemetry()
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        return lambda mel: list(compiled({0: mel}).values())
    session = ort_session(path, threads)
    return lambda mel: session.run(None, {"mel": mel})


def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with the runtime's own settings (sessions timed side by side would otherwise
    spin on each other's cores)."""
    import onnxruntime as ort

    from edge_askd_runtime.backends.onnxruntime import session_options

    return ort.InferenceSession(str(path), session_options(ort, threads), providers=["CPUExecutionProvider"])


def evaluation_sets(max_clips: int) -> dict[str, list]:
    """{set: EvalClips}: the 7 parity clips, then the gate's real sets (clean-en, telephone-dev), `max_clips` each
    (evenly spaced; 0 or None: all)."""
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_export.parity import DEFAULT_CLIPS, EvalClip, ParityConfig, load_wer_sets
    from edge_askd_runtime.audio import load_audio

    sets = {"parity-7": [EvalClip(n, load_audio(fetch_clip(n)), REAL_CLIPS[n].text) for n in DEFAULT_CLIPS]}
    for clip in load_wer_sets(ParityConfig(max_clips_per_set=max_clips or None)):
        sets.setdefault(clip.set, []).append(clip)
    return sets


def _size_mb(path: Path) -> float:
    """The file's size, with its weights file for an OpenVINO IR."""
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return (path.stat().st_size + (weights.stat().st_size if weights else 0)) / 2**20


def _snr_db(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    return float(
        np.mean(
            [
                10 * np.log10(np.sum(r**2) / max(np.sum((r - o) ** 2), 1e-20))
                for r, o in zip(reference, other, strict=True)
            ]
        )
    )


def measure(
    checkpoint: Path,
    export: Path,
    schemes: list[str],
    max_clips: int,
    repeats: int,
    threads: int,
    low_rank_variance: float = 0.99,
    calibration_clips: int = CALIBRATION_CLIPS,
) -> list[dict]:
    from edge_askd_runtime.scoring import token_agreement, wer
    from edge_askd_runtime.transcriber import Transcriber

    from .run import dev_clips, length_clips

    tr = Transcriber(export, backend="onnxruntime", precision="fp32", threads=threads)
    fp32_encoder = tr.backend.spec.encoder
    with tempfile.TemporaryDirectory(prefix="encoder-schemes-") as tmp:
        notes: dict[str, dict] = {}
        heads = json.loads((export / "config.json").read_text())["encoder_attention_heads"]
        built = build_schemes(
            checkpoint, fp32_encoder, tr.mel, schemes, Path(tmp), heads, low_rank_variance, notes, calibration_clips
        )
        files = {"fp32": fp32_encoder, **built}
        runners = {name: encoder_runner(path, threads) for name, path in files.items()}
        rows = {name: {"scheme": name, "file_mb": round(_size_mb(path), 1)} for name, path in files.items()}
        for name, note in notes.items():
            if name in rows:
                rows[name]["low_rank"] = note

        for length, audio in length_clips(dev_clips(), [5.0, 10.0]).items():
            mel = tr.mel(audio)
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(repeats):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(mel)
                    times[name].append(time.perf_counter() - start)
            for name, values in times.items():
                rows[name][f"encoder_ms_{length:.0f}s"] = round(1000 * statistics.median(values), 1)

        for set_name, clips in evaluation_sets(max_clips).items():
            mels = [tr.mel(c.audio) for c in clips]
            refs = [runners["fp32"](mel) for mel in mels]
            ref_tokens = [tr.greedy_tokens(c.audio, cross) for cross, c in zip(refs, clips, strict=True)]
            for name, run in runners.items():
                outputs = [run(mel) for mel in mels]
                tokens = [tr.greedy_tokens(c.audio, cross) for cross, c in zip(outputs, clips, strict=True)]
                hyps = [tr.detokenizer.decode(t) for t in tokens]  # the gate's text: greedy, no VAD
                rows[name][set_name] = {
                    "clips": len(clips),
                    "snr_db": round(float(np.mean([_snr_db(r, o) for r, o in zip(refs, outputs, strict=True)])), 1),
                    "token_agreement": round(token_agreement(tokens, ref_tokens), 4),
                    "wer": round(100 * wer([c.text for c in clips], hyps), 2),
                }
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    from edge_askd_export.pipeline import ENCODER_SCHEMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="the checkpoint the export was made from (smoothquant needs it)")
    p.add_argument("export", type=Path, help="an export directory with a valid onnx-fp32 variant")
    known = (*ENCODER_SCHEMES, *OPENVINO_SCHEMES, *TRIED_SCHEMES)
    p.add_argument("--schemes", default=",".join(known), help=f"any of {', '.join(known)}")
    p.add_argument("--max-clips", type=int, default=40, help="clips per real set (evenly spaced)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--low-rank-variance", type=float, default=0.99, help="low-rank*: share of each layer's output variance kept"
    )
    p.add_argument(
        "--calibration-clips",
        type=int,
        default=CALIBRATION_CLIPS,
        help="recordings that calibrate the calibrated schemes",
    )
    args = p.parse_args(argv)
    schemes = [s for s in args.schemes.split(",") if s]
    unknown = sorted(set(schemes) - set(known))
    if unknown:
        p.error(f"--schemes: unknown {', '.join(unknown)}; use {', '.join(known)}")
    from edge_askd_runtime.errors import EdgeAskdError

    try:
        rows = measure(
            args.checkpoint,
            args.export,
            schemes,
            args.max_clips,
            args.repeats,
            args.threads,
            args.low_rank_variance,
            args.calibration_clips,
        )
    except EdgeAskdError as exc:
        sys.exit(f"error: {exc}")
    print_table(
        rows,
        ("encoder", "scheme"),
        ("5 s", "10 s"),
        lambda r: (f"{r['encoder_ms_5s']} ms", f"{r['encoder_ms_10s']} ms"),
        lambda s: f"{s['snr_db']} dB, agree {s['token_agreement']:.3f}, WER {s['wer']:.2f} %",
        "SNR and agreement against the fp32 encoder (fp32 decoder throughout); WER against the references.",
    )
    for row in rows:
        if "low_rank" in row:
            note = row["low_rank"]
            print(
                f"{row['scheme']}: {note['factored_layers']} of {note['layers']} linears factored, "
                f"{100 * note['weights_kept']:.0f} % of their weights kept at {note['variance']} of the variance"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def print_table(rows: list[dict], name: tuple[str, str], speeds: tuple[str, ...], speed_of, cell_of, note: str):
    """One Markdown row per scheme: its name (header, row key), file MB, the speed cells, one cell per real set."""
    sets = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    print(f"| {name[0]} | MB | {' | '.join(speeds)} | {' | '.join(sets)} |")
    print("|---|---|" + "---|" * (len(speeds) + len(sets)))
    for r in rows:
        cells = [*speed_of(r), *(cell_of(r[s]) for s in sets)]
        print(f"| {r[name[1]]} | {r['file_mb']} | {' | '.join(cells)} |")
    print(note)


if __name__ == "__main__":
    sys.exit(main())
