"""The method comparison of issue 4: CE vs static KD vs ASKD-decay vs full ASKD, same step budget, one command.

    python -m edge_askd.distill.experiment --preset base --out runs/exp-base --docs docs/askd-experiment

Data (the embedded default; built from packages, nothing downloaded from a hub):
  train  synthetic multi-engine TTS corpus (espeak-ng, flite, festival) + real telephone-en train prompts;
  dev    real clean-en clips + real telephone-en dev prompts (held out; scored per set), a held-out synthetic
         dev set (in-domain: same engines, sentences disjoint from train) and the hallucination probes.
Each method is one `edge-askd distill` run (resumable: re-running the command continues unfinished runs and
reuses finished ones). Writes results.md / results.csv, lambda_beta.png (lambda(t), beta(t)) and dev_wer.png
(dev WER over steps) to --out and copies them to --docs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edge_askd_runtime.atomic import atomic_write_text

from .config import resolve_recipe

REPO = Path(__file__).resolve().parents[2]
RUN_ORDER = ("static_kd", "askd", "askd_decay", "ce")  # longest first, so two workers finish together
METHOD_LABELS = {
    "ce": "CE only (fine-tuning)",
    "static_kd": "static KD (Distil-Whisper)",
    "askd_decay": "ASKD: decaying teacher",
    "askd": "ASKD: decay + self-KD",
}


@dataclass(frozen=True)
class ExperimentPreset:
    student: str
    teacher: str
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    ema_decay: float
    synth_train: int
    synth_dev: int
    eval_every: int
    eval_clips: int  # clips of the mixed real dev set scored during training
    config: str = "askd-base-e6d2"  # a shipped recipe (edge_askd/recipes)


EXPERIMENT_PRESETS = {
    # The dynamic-context students (full-depth teacher copies): the defaults. CPU-sized, two runs side by side.
    "tiny.en-dyn": ExperimentPreset(
        "tiny.en-dyn", "tiny.en", 60, 8, 1e-5, 5, 0.9, 1500, 80, 20, 40, "askd-tiny.en-dyn"
    ),
    "base-dyn": ExperimentPreset("base-dyn", "base", 60, 8, 1e-5, 5, 0.9, 1500, 80, 20, 40, "askd-base-dyn"),
    # Shallow decoders (issue 4's experiment): a KD step (batch 8) takes about 9 s alone on 2 cores.
    "base": ExperimentPreset("base-e6d2", "base", 60, 8, 2e-4, 6, 0.95, 1500, 80, 20, 40),
    "tiny": ExperimentPreset("tiny-e2d1", "tiny.en", 12, 4, 3e-4, 2, 0.9, 40, 10, 6, 6),
}


def _absolute_rows(manifest: Path) -> list[dict]:
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row["audio"] = str((manifest.parent / row["audio"]).resolve())
        rows.append(row)
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def build_data(root: Path, synth_train: int, synth_dev: int, eval_clips: int, seed: int = 0) -> dict[str, Path]:
    """The default data's manifests (absolute audio paths) under root; reuses what is already built.

    synth_train / synth_dev: synthetic clips; eval_clips: size of `dev_eval`, the real dev subset (clean and
    telephone interleaved) scored during training."""
    from ..data.probes import build_probes
    from ..data.real_sets import build_real_sets, evaluation_transcripts
    from ..data.synth import SynthConfig, synthesise
    from ..data.text_corpus import cached_sentences

    root.mkdir(parents=True, exist_ok=True)
    real = build_real_sets(root / "real", ("clean-en", "telephone-en"))
    clean, (tel_train, tel_dev) = real["clean-en"][0], real["telephone-en"]
    probes = build_probes(root / "probes", seed=seed)
    sentences = cached_sentences(exclude=evaluation_transcripts())
    synth = synthesise(root / "synth-train", sentences, SynthConfig(count=synth_train, seed=seed))
    train_rows = _absolute_rows(synth) + _absolute_rows(tel_train)
    seen = {r["text"] for r in train_rows}
    dev_manifest = synthesise(
        root / "synth-dev",
        [s for s in sentences if s not in seen],
        SynthConfig(count=synth_dev, seed=seed + 1, split="dev"),
    )
    clean_rows, tel_rows = _absolute_rows(clean), _absolute_rows(tel_dev)
    # Dev during training: clean and telephone interleaved, so the first eval_clips cover both.
    mixed = [r for pair in zip(clean_rows, tel_rows, strict=False) for r in pair] + tel_rows[len(clean_rows) :]
    rows = {
        "train": train_rows,
        "dev_mixed": mixed,
        "dev_eval": mixed[:eval_clips],
        "clean-en": clean_rows,
        "telephone-dev": tel_rows,
        "synth-dev": _absolute_rows(dev_manifest),
        "probes": _absolute_rows(probes),
    }
    return {key: _write_jsonl(path, rows[key]) for key, path in data_paths(root).items()}


DATA_FILES = {
    "train": "train.jsonl",
    "dev_mixed": "dev-mixed.jsonl",
    "dev_eval": "dev-eval.jsonl",
    "clean-en": "clean-en.jsonl",
    "telephone-dev": "telephone-dev.jsonl",
    "synth-dev": "synth-dev.jsonl",
    "probes": "probes.jsonl",
}


def data_paths(root: Path) -> dict[str, Path]:
    """Where build_data(root, ...) writes each manifest."""
    return {key: root / name for key, name in DATA_FILES.items()}


def method_overrides(method: str, preset: ExperimentPreset, data: dict[str, Path], out: Path, threads: int) -> list:
    return [
        f"method={method}",
        f"student={preset.student}",
        f"train_manifest={json.dumps(str(data['train']))}",
        f"dev_manifest={json.dumps(str(data['dev_mixed']))}",
        f"probe_manifest={json.dumps(str(data['probes']))}",
        f"output_dir={json.dumps(str(out / method))}",
        f"max_steps={preset.steps}",
        f"batch_size={preset.batch_size}",
        "grad_accum=1",
        f"lr={preset.lr}",
        f"warmup_steps={preset.warmup_steps}",
        f"ema_decay={preset.ema_decay}",
        f"eval_every={preset.eval_every}",
        f"eval_max_clips={preset.eval_clips}",
        f"checkpoint_every={max(preset.steps // 6, 1)}",
        f"threads={threads}",
        "progress=false",
    ]


def run_method(method: str, overrides: list[str], config: Path, log: Path) -> float:
    """One `edge-askd distill` run in its own process (resumes if a checkpoint exists); returns wall seconds."""
    cmd = [sys.executable, "-m", "edge_askd.distill", "--config", str(config)]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    with log.open("a") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0


def score_model(model: str, sets: dict[str, Path], threads: int, hyp_dir: Path | None = None) -> dict[str, float]:
    """WER and repeated 4-gram rate per real/synthetic set and the probe hallucination rate, with the PyTorch
    transcriber (a student with its tail margin, a teacher on its 30 s window). With hyp_dir, every clip's
    reference and hypothesis go to hyp_dir/<set>.jsonl, to see where the errors are."""
    from edge_askd_runtime.scoring import repeated_ngram_rate, wer

    from ..hf_transcriber import HFTranscriber
    from .evaluation import hallucinated

    tr = HFTranscriber(model, threads=threads)
    row: dict[str, float] = {}
    for name, manifest in sets.items():
        rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
        hyps = [tr.transcribe(r["audio"]).text for r in rows]
        if hyp_dir is not None:
            hyp_dir.mkdir(parents=True, exist_ok=True)
            pairs = zip(rows, hyps, strict=True)
            scored = [{"audio": r["audio"], "reference": r["text"], "hypothesis": h} for r, h in pairs]
            _write_jsonl(hyp_dir / f"{name}.jsonl", scored)
        if name == "probes":
            row["probe_hallucination_rate"] = sum(hallucinated(r["text"], h) for r, h in zip(rows, hyps, strict=True))
            row["probe_hallucination_rate"] /= len(rows)
        else:
            row[f"wer_{name}"] = wer([r["text"] for r in rows], hyps)
            row[f"repeat_{name}"] = repeated_ngram_rate(hyps)
    return row


def _read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def plot(out: Path, methods: list[str], teacher_dev_wer: float | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for m in methods:
        log = _read_csv(out / m / "train_log.csv")
        steps = [int(r["step"]) for r in log]
        ax_l.plot(steps, [float(r["lambda"]) for r in log], label=METHOD_LABELS[m])
        ax_b.plot(steps, [float(r["beta"]) for r in log], label=METHOD_LABELS[m])
    ax_l.set(title="teacher weight lambda(t)", xlabel="step")
    ax_b.set(title="self-KD weight beta(t)", xlabel="step")
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "lambda_beta.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for m in methods:
        ev = _read_csv(out / m / "eval_log.csv")
        wers = [100 * float(r["dev_wer"]) for r in ev]
        ax.plot([int(r["step"]) for r in ev], wers, marker="o", label=METHOD_LABELS[m])
    if teacher_dev_wer is not None:
        ax.axhline(100 * teacher_dev_wer, color="k", ls="--", lw=1, label="teacher (30 s window)")
    ax.set(title="dev WER during training (real clean + telephone)", xlabel="step", ylabel="WER %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "dev_wer.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def step_timing(log: list[dict]) -> dict:
    """Seconds per step and training minutes from the train log: unlike wall time, unchanged by a resumed run."""
    secs = [float(r["sec_per_step"]) for r in log]
    return {"sec_per_step": round(sum(secs) / len(secs), 2), "train_min": round(sum(secs) / 60, 1)}


def write_results(out: Path, rows: list[dict]) -> list[Path]:
    fields = [
        "method", "wer_clean-en", "wer_telephone-dev", "wer_synth-dev", "wer_parity-7", "repeat_clean-en",
        "repeat_telephone-dev", "probe_hallucination_rate", "sec_per_step", "train_min",
    ]  # fmt: skip
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    head = ["model", "clean-en WER", "telephone dev WER", "synth dev WER (in-domain)", "7 parity clips WER"]
    head += ["clean-en repeated 4-grams"]
    head += ["telephone dev repeated 4-grams", "probe halluc."]
    head += ["s/step", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"]]
        for k in fields[1:]:
            v = r.get(k)
            percent = k.startswith(("wer", "probe", "repeat"))
            cells.append("" if v is None else f"{100 * v:.1f} %" if percent else f"{v}")
        lines.append("| " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return [out / "results.md", out / "results.csv"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(EXPERIMENT_PRESETS), default="tiny.en-dyn")
    ap.add_argument("--out", type=Path, default=Path("runs/exp-base"))
    ap.add_argument("--docs", type=Path, default=None, help="copy the table and plots here (e.g. docs/askd-experiment)")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's step budget")
    ap.add_argument("--methods", default=",".join(RUN_ORDER))
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel (one thread each when > 1)")
    ap.add_argument("--config", type=Path, default=None, help="recipe TOML or name (default: the preset's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value for every run")
    args = ap.parse_args(argv)
    preset = EXPERIMENT_PRESETS[args.preset]
    if args.steps:
        preset = ExperimentPreset(**{**preset.__dict__, "steps": args.steps, "eval_every": max(args.steps // 3, 1)})
    methods = args.methods.split(",")
    config = resolve_recipe(args.config or preset.config)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(out / "data", preset.synth_train, preset.synth_dev, preset.eval_clips)
    threads = 1 if args.workers > 1 else 0

    def one(method: str) -> None:
        overrides = method_overrides(method, preset, data, out, threads) + args.overrides
        wall = run_method(method, overrides, config, out / f"{method}.log")
        print(f"{method}: done in {wall / 60:.1f} min", file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for fut in [pool.submit(one, m) for m in methods]:
            fut.result()

    from edge_askd_export.parity import DEFAULT_CLIPS

    from ..real_clips import write_clips_manifest

    sets = {k: data[k] for k in ("clean-en", "telephone-dev", "synth-dev", "probes")}
    sets["parity-7"] = write_clips_manifest(out / "data" / "parity-7.jsonl", DEFAULT_CLIPS)
    score_threads = max(os.cpu_count() or 1, 1)
    rows = []
    for m in RUN_ORDER:
        if m not in methods:
            continue
        log = _read_csv(out / m / "train_log.csv")
        row = {"method": METHOD_LABELS[m], **score_model(str(out / m / "student"), sets, score_threads)}
        row.update(step_timing(log))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    teacher = f"teacher:{preset.teacher}"
    teacher_row = {"method": f"teacher {preset.teacher} (30 s window)", **score_model(teacher, sets, score_threads)}
    rows.append(teacher_row)
    if preset.teacher != "tiny.en":
        rows.append({"method": "teacher tiny.en (30 s window)", **score_model("teacher:tiny.en", sets, score_threads)})
    # The dashed reference line in dev_wer.png: the teacher on exactly the clips scored during training.
    mixed_teacher = score_model(f"teacher:{preset.teacher}", {"dev-eval": data["dev_eval"]}, score_threads)
    files = write_results(out, rows) + plot(out, methods, mixed_teacher["wer_dev-eval"])
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, args.docs / f.name)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
