"""The method comparison in a tiny, CPU-sized form: CE vs static KD vs ASKD-decay vs full ASKD, same step budget.

    python -m edge_askd.distill_experiment --out runs/exp-tiny [--steps 60] [--set key=value ...]

Train: espeak-ng renderings of template sentences (synthetic, in-domain) + one real ARCTIC clip. Dev: real clips
held out from training (LibriVox, JFK, ARCTIC; out-of-domain for a synthetic-trained student). Probe: silence and
noise, where any output is a hallucination. Teacher tiny.en, student tiny-e4d1. Writes results.md / results.csv
and each run's train_log.csv (lambda(t), beta(t)) and eval_log.csv (dev WER over steps).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from .distill_config import load_config

METHODS = ("ce", "static_kd", "askd_decay", "askd")
DEV_CLIPS = ("librivox_0870", "librivox_0880", "librivox_0890", "librivox_0930", "jfk", "arctic_a0009")


def _row(audio: Path, text: str, split: str, source: str, speaker: str) -> dict:
    duration = sf.info(str(audio)).duration
    return {"audio": str(audio), "text": text, "duration": duration, "language": "en", "source": source,
            "split": split, "speaker": speaker}  # fmt: skip


def build_data(root: Path, n_synthetic: int = 48, seed: int = 0) -> dict[str, Path]:
    from .data.text_corpus import template_sentences
    from .real_clips import REAL_CLIPS, fetch_clip

    root.mkdir(parents=True, exist_ok=True)
    train = []
    for i, text in enumerate(template_sentences(n_synthetic, seed=seed)):
        voice, rate = ("en-us", "en-gb", "en-us+f3", "en-gb+m3")[i % 4], (145, 165, 185)[i % 3]
        wav = root / f"synth{i:03d}.wav"
        if not wav.is_file():
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav), text], check=True)
        train.append(_row(wav, text, "train", "espeak-ng", voice))
    clip = REAL_CLIPS["arctic_a0007"]
    train.append(_row(fetch_clip(clip.name), clip.text, "train", clip.source, clip.speaker))
    dev = [
        _row(fetch_clip(n), REAL_CLIPS[n].text, "dev", REAL_CLIPS[n].source, REAL_CLIPS[n].speaker) for n in DEV_CLIPS
    ]
    rng = np.random.default_rng(seed)
    probe = []
    for name, audio in (("silence", np.zeros(32000)), ("noise", 0.05 * rng.standard_normal(32000))):
        sf.write(root / f"probe_{name}.wav", audio.astype(np.float32), 16000)
        probe.append(_row(root / f"probe_{name}.wav", "", "probe", "generated", name))
    paths = {}
    for split, rows in (("train", train), ("dev", dev), ("probe", probe)):
        paths[split] = root / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def teacher_dev_wer(dev: Path, name: str = "tiny.en") -> float:
    from edge_askd_runtime.scoring import wer

    from .distill_data import read_clips
    from .hf_transcriber import HFTranscriber

    clips = read_clips(dev)
    tr = HFTranscriber(f"teacher:{name}", threads=1)
    return wer([c.text for c in clips], [tr.transcribe(c.audio).text for c in clips])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/exp-tiny")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from .trainer import Trainer

    out = Path(args.out)
    data = build_data(out / "data")
    results = []
    for method in args.methods.split(","):
        overrides = [
            f"train_manifest={json.dumps(str(data['train']))}",
            f"dev_manifest={json.dumps(str(data['dev']))}",
            f"probe_manifest={json.dumps(str(data['probe']))}",
            f"output_dir={json.dumps(str(out / method))}",
            f"method={method}",
            "student=tiny-e4d1",
            f"max_steps={args.steps}",
            "batch_size=4",
            "warmup_steps=5",
            "lr=1e-4",
            f"eval_every={max(args.steps // 3, 1)}",
            f"checkpoint_every={args.steps}",
            "threads=1",
            "progress=false",
            *args.overrides,
        ]
        cfg = load_config(None, overrides)
        trainer = Trainer(cfg)
        if not results:
            init = trainer.evaluate()
            results.append(
                {
                    "method": "student at init",
                    "dev_wer": init["dev_wer"],
                    "probe_hallucination_rate": init["probe_hallucination_rate"],
                }
            )
        t0 = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - t0
        with (out / method / "train_log.csv").open() as f:
            sec = np.mean([float(r["sec_per_step"]) for r in csv.DictReader(f)])
        last = trainer.eval_rows[-1]
        results.append(
            {
                "method": method,
                "dev_wer": last["dev_wer"],
                "probe_hallucination_rate": last["probe_hallucination_rate"],
                "sec_per_step": round(sec, 2),
                "wall_s": round(elapsed, 1),
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    results.append({"method": "teacher tiny.en (30 s window)", "dev_wer": teacher_dev_wer(data["dev"])})
    fields = ["method", "dev_wer", "probe_hallucination_rate", "sec_per_step", "wall_s"]
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    for r in results:
        cells = [f"{r.get(k):.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in fields]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
