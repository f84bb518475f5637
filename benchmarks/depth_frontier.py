"""Decoder depth against accuracy and latency: the students of several quickstart runs, timed in one bench run.

    python -m edge_askd_bench.depth_frontier QUICKSTART_DIR [QUICKSTART_DIR ...] [--backend onnxruntime]
                                             [--precision int8] [--lengths 5,10] [--repeats 5] [--threads 2]
                                             [--out frontier]

Each QUICKSTART_DIR is an `edge-askd quickstart --out DIR` run (one student depth each, e.g. `--student base:6:4
--set freeze_encoder=true`). Accuracy is its accuracy stage: the PyTorch student's WER per real set, none of them
trained on, with the teacher's beside it. Latency is measured here, every student's exported variant interleaved
in one `edge-askd bench` run, so the speeds compare. Writes frontier.json and frontier.png (WER per set against
the decoder's ms per token and against end-to-end latency at the longest length), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_json


def read_run(run: Path) -> dict:
    """A quickstart run's student: its depth, its export and its accuracy stage's scores (student, teacher)."""
    stages = run / "stages"
    try:
        accuracy = json.loads((stages / "accuracy.json").read_text())["outputs"]
        export = json.loads((stages / "export.json").read_text())["outputs"]["export_dir"]
        student = Path(json.loads((stages / "distill.json").read_text())["outputs"]["student"])
        config = json.loads((student / "config.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(
            f"error: {run}: not a finished quickstart run ({exc}); run edge-askd quickstart --out {run}"
        ) from None
    return {
        "run": str(run),
        "student": f"e{config['encoder_layers']}d{config['decoder_layers']}",
        "decoder_layers": config["decoder_layers"],
        "export": export,
        "teacher": accuracy["teacher"],
        "student_scores": accuracy["scores"]["student"],
        "teacher_scores": accuracy["scores"]["teacher"],
    }


def measure(
    runs: list[Path], backend: str, precision: str, lengths: list[float], repeats: int, threads: int, out: Path
):
    from .run import BenchConfig, run_benchmark

    students = [read_run(run) for run in runs]
    for s in students:
        s["candidate"] = f"runtime:{s['export']}:{backend}:{precision}"
    config = BenchConfig([s["candidate"] for s in students], lengths, repeats, threads, out)
    result = run_benchmark(config, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if result.get("missing"):
        raise SystemExit(f"error: not measured: {result['missing']}")
    for s in students:
        s["latency"] = {
            f"{r['audio_s']:g}s": {k: r[k] for k in ("e2e_ms", "encoder_ms", "decode_ms", "tokens", "ms_per_token")}
            for r in result["rows"]
            if r["candidate"] == s["candidate"]
        }
    return {"host": result["host"], "backend": backend, "precision": precision, "students": students}


def table(frontier: dict) -> str:
    students = frontier["students"]
    sets = sorted(k.removeprefix("wer_") for k in students[0]["student_scores"] if k.startswith("wer_"))
    longest = max(students[0]["latency"], key=lambda k: float(k[:-1]))
    lines = [
        "| student | " + " | ".join(f"{s} WER" for s in sets) + f" | ms/token ({longest}) | e2e {longest} ms |",
        "|---" * (len(sets) + 3) + "|",
    ]
    rows = [(s["student"], s["student_scores"], s["latency"][longest]) for s in students]
    rows.append((f"`{students[0]['teacher']}` (30 s window, PyTorch)", students[0]["teacher_scores"], None))
    for name, scores, lat in rows:
        speed = f"{lat['ms_per_token']:.2f} | {lat['e2e_ms']['median']:.0f}" if lat else "- | -"
        lines.append(f"| {name} | " + " | ".join(f"{100 * scores[f'wer_{s}']:.2f} %" for s in sets) + f" | {speed} |")
    return "\n".join(lines) + "\n"


def plot(frontier: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = sorted(frontier["students"], key=lambda s: s["decoder_layers"])
    sets = sorted(k.removeprefix("wer_") for k in students[0]["student_scores"] if k.startswith("wer_"))
    longest = max(students[0]["latency"], key=lambda k: float(k[:-1]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (("ms_per_token", f"decoder ms per token ({longest} clip)"), ("e2e", f"end-to-end ms ({longest} clip)"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name in sets:
            xs = [
                s["latency"][longest]["e2e_ms"]["median"] if key == "e2e" else s["latency"][longest][key]
                for s in students
            ]
            ys = [100 * s["student_scores"][f"wer_{name}"] for s in students]
            (line,) = ax.plot(xs, ys, marker="o", label=f"{name}")
            for x, y, s in zip(xs, ys, students, strict=True):
                ax.annotate(s["student"], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
            teacher = 100 * students[0]["teacher_scores"][f"wer_{name}"]
            ax.axhline(teacher, color=line.get_color(), linestyle="--", linewidth=0.8, label=f"{name}, teacher")
        ax.set_xlabel(label)
        ax.set_ylabel("WER % (PyTorch student, real speech)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Decoder depth: accuracy against speed ({frontier['backend']} {frontier['precision']}; dashed: the teacher)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="quickstart output directories, one student depth each")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino"))
    p.add_argument("--precision", default="int8")
    p.add_argument("--lengths", default="5,10")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("frontier"))
    args = p.parse_args(argv)
    lengths = [float(x) for x in args.lengths.split(",") if x]
    frontier = measure(args.runs, args.backend, args.precision, lengths, args.repeats, args.threads, args.out / "bench")
    atomic_write_json(args.out / "frontier.json", frontier)
    plot(frontier, args.out / "frontier.png")
    print(table(frontier), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
