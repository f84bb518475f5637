"""How many output tokens an English student needs: token agreement and WER per shortlist size K.

    python -m edge_askd_bench.vocab_shortlist EXPORT_DIR [--sizes 2048,4096,8192,16384] [--out FILE.json]

EXPORT_DIR is a full-vocabulary export (`edge-askd export ... --vocab full`). Restricting the argmax to K tokens is
what a shortlisted graph does (it computes the same logits for the tokens it keeps), so each K here is the full
export with every token outside `export/shortlist.py`'s first K suppressed: one encoder pass per clip, one greedy
decode per K. Clips: the parity gate's real sets (clean-en, telephone-dev), which the ranking never saw. Prints a
Markdown table; agreement is with the full vocabulary's tokens (aligned, as the parity gate counts it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


def measure(export_dir: Path, sizes: list[int], threads: int) -> list[dict]:
    from edge_askd_export.parity import ParityConfig, load_wer_sets
    from edge_askd_export.shortlist import ranked_ids
    from edge_askd_runtime.audio import SAMPLE_RATE
    from edge_askd_runtime.decoding import allocate_cache, greedy_decode
    from edge_askd_runtime.scoring import token_agreement, wer
    from edge_askd_runtime.transcriber import Transcriber

    tr = Transcriber(export_dir, threads=threads)
    if tr.vocab.shortlisted:
        sys.exit(f"{export_dir}: already shortlisted; export with --vocab full to compare sizes")
    tok = tr.manifest["tokenizer"]
    ranked, floor = ranked_ids(export_dir / tok["file"], tok["eos"], tok["no_timestamps"])
    vocab_size = tr.manifest["model"]["dims"]["vocab_size"]
    runs = {"full": tr.settings}
    for k in sizes:
        outside = sorted(set(range(vocab_size)) - set(ranked[: max(k, floor)]))
        runs[str(k)] = replace(
            tr.settings, suppress_tokens=tuple(sorted(set(tr.settings.suppress_tokens) | set(outside)))
        )
    clips = load_wer_sets(ParityConfig())
    cache = allocate_cache([tuple(s) for s in tr.variant["io"]["cache_shapes"]])
    tokens: dict[str, list[list[int]]] = {name: [] for name in runs}
    started = time.perf_counter()
    for i, clip in enumerate(clips):
        cross = tr.backend.run_encoder(tr.mel(clip.audio))
        for name, settings in runs.items():
            result = greedy_decode(tr.backend, cross, settings, len(clip.audio) / SAMPLE_RATE, cache)
            tokens[name].append(result.tokens)
        if i % 20 == 0:
            print(f"  {i + 1}/{len(clips)} clips, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for name in runs:
        row: dict = {"vocab": name, "always_kept": floor}
        for set_name in dict.fromkeys(c.set for c in clips):
            idx = [i for i, c in enumerate(clips) if c.set == set_name]
            texts = [tr.detokenizer.decode(tokens[name][i]).strip() for i in idx]
            row[f"{set_name} WER"] = 100.0 * wer([clips[i].text for i in idx], texts)
            row[f"{set_name} agreement"] = token_agreement(
                [tokens[name][i] for i in idx], [tokens["full"][i] for i in idx]
            )
            row[f"{set_name} identical"] = sum(tokens[name][i] == tokens["full"][i] for i in idx) / len(idx)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("vocab", "always_kept")]
    out = ["| vocabulary | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.2f} %" if "WER" in k else f"{r[k]:.4f}" for k in keys]
        out.append(f"| {r['vocab']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("--sizes", default="2048,4096,8192,16384")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = measure(args.export_dir, [int(s) for s in args.sizes.split(",")], args.threads)
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
