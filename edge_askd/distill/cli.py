"""`edge-askd distill` and `python -m edge_askd.distill` (what torchrun starts): the parser and its handler.
Importing this module does not import torch, so `edge-askd --help` stays light; the handler imports the trainer
when it runs."""

from __future__ import annotations

import argparse
import sys

from edge_askd_runtime.errors import EdgeAskdError

from .config import load_config


def add_distill_parser(subparsers) -> argparse.ArgumentParser:
    """`edge-askd distill --config CFG [--set key=value ...]`."""
    p = subparsers.add_parser(
        "distill",
        help="distil a Whisper teacher into a small student (ASKD, static KD, CE baselines)",
        description="Train a student; kill it at any time and rerun the same command to resume exactly. "
        "Many GPUs: torchrun --nproc_per_node N -m edge_askd.distill --config CFG",
    )
    p.add_argument(
        "--config",
        help="a TOML file, or a shipped recipe: askd-base-dyn, askd-tiny.en-dyn, ...; keys as in DistillConfig",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set max_steps=200 --set method=static_kd",
    )
    p.set_defaults(func=run_distill)
    return p


def run_distill(args: argparse.Namespace) -> int:
    from .trainer import Trainer

    Trainer(load_config(args.config, args.overrides)).train()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-askd")
    add_distill_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["distill", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except EdgeAskdError as exc:
        print(f"edge-askd: error: {exc}", file=sys.stderr)
        return 2
