"""How many encoder frames of silence a student needs after the audio: WER and repetition per tail margin.

    python -m edge_askd_bench.tail_margin --model tiny.en-dyn --margins 0,16,32,64 --data DATA_DIR [--out FILE.json]
    python -m edge_askd_bench.tail_margin --model STUDENT_DIR --margins 64 --min-frames 0,150,300,500 --data DATA_DIR

`--model` is a student preset (an *untrained* full-depth copy of its teacher, the distillation's starting point)
or a trained student checkpoint directory (its own margin and minimum context are then overridden). Each margin
(and minimum context) decodes the 7 parity clips and the real sets of `DATA_DIR` (`build_data`'s manifests:
clean-en, telephone-dev) through the PyTorch student with the runtime's token policy; the padded teacher is
scored on the same clips for reference. Prints a Markdown table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _sets(data: Path | None, limit: int) -> dict[str, list[tuple[str, str]]]:
    from edge_askd.real_clips import REAL_CLIPS, fetch_clip
    from edge_askd_export.parity import DEFAULT_CLIPS

    sets = {"parity-7": [(str(fetch_clip(n)), REAL_CLIPS[n].text) for n in DEFAULT_CLIPS]}
    if data is not None:
        for name in ("clean-en", "telephone-dev"):
            rows = [json.loads(line) for line in (data / f"{name}.jsonl").read_text().splitlines() if line.strip()]
            sets[name] = [(r["audio"], r["text"]) for r in rows[: limit or None]]
    return sets


def measure(
    model: str, margins: list[int], sets: dict, threads: int, teacher: str = "", min_frames: tuple[int, ...] = (0,)
) -> list[dict]:
    import torch

    from edge_askd.distill.student import MIN_KEY, TAIL_KEY, resolve_preset, save_student, student_from_preset
    from edge_askd.hf_transcriber import HFTranscriber
    from edge_askd_runtime.scoring import repeated_ngram_rate, wer

    torch.set_num_threads(threads)
    if Path(model).is_dir():
        tr = HFTranscriber(model, threads=threads)
        teacher = teacher or "teacher:base"
    else:
        import tempfile

        student, _, teacher_dir = student_from_preset(model)
        with tempfile.TemporaryDirectory(prefix="tail-margin-") as tmp:  # loaded into memory, then deleted
            save_student(student, tmp, teacher_dir)
            tr = HFTranscriber(tmp, threads=threads)
        teacher = teacher or f"teacher:{resolve_preset(model).teacher}"
    rows = []
    ref = HFTranscriber(teacher, threads=threads)
    runs: list[tuple[str, object, int | None, int | None]] = [("teacher (30 s window)", ref, None, None)]
    for m in margins:
        for n in min_frames:
            label = f"margin {m}" + (f", min context {n} ({n * 0.02:g} s)" if len(min_frames) > 1 or n else "")
            runs.append((label, tr, m, n))
    for label, transcriber, margin, least in runs:
        if margin is not None:
            transcriber.tail_frames, transcriber.min_frames = margin, least
            setattr(transcriber.model.config, TAIL_KEY, margin)
            setattr(transcriber.model.config, MIN_KEY, least)
        row: dict = {"model": label, "tail_frames": margin, "min_frames": least}
        t0 = time.perf_counter()
        for name, clips in sets.items():
            hyps = [transcriber.transcribe(audio).text for audio, _ in clips]
            row[f"wer_{name}"] = round(100 * wer([t for _, t in clips], hyps), 2)
            row[f"repeat_{name}"] = round(100 * repeated_ngram_rate(hyps), 2)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict], sets: list[str]) -> str:
    head = "| | " + " | ".join(f"WER {s} | repeated 4-grams {s}" for s in sets) + " |"
    lines = [head, "|---" * (1 + 2 * len(sets)) + "|"]
    for r in rows:
        cells = [f"{r[f'wer_{s}']:.1f} % | {r[f'repeat_{s}']:.1f} %" for s in sets]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_askd_bench.tail_margin", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny.en-dyn", help="student preset (untrained copy) or checkpoint directory")
    p.add_argument("--margins", default="0,16,32,64", help="tail margins in encoder frames (20 ms each)")
    p.add_argument("--min-frames", default="0", help="minimum contexts in encoder frames (300 = 6 s), each margin")
    p.add_argument("--data", type=Path, help="build_data directory with clean-en.jsonl and telephone-dev.jsonl")
    p.add_argument("--limit", type=int, default=0, help="at most this many clips per real set (0: all)")
    p.add_argument("--teacher", default="", help="reference teacher (default: the preset's; teacher:base for a dir)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    sets = _sets(args.data, args.limit)
    margins, least = [int(m) for m in args.margins.split(",")], tuple(int(n) for n in args.min_frames.split(","))
    rows = measure(args.model, margins, sets, args.threads, args.teacher, least)
    print(table(rows, list(sets)))
    if args.out:
        clips = {k: len(v) for k, v in sets.items()}
        args.out.write_text(json.dumps({"model": args.model, "clips": clips, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
