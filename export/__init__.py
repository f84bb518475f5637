"""edge_askd_export: Whisper checkpoint -> ONNX / OpenVINO IR / TFLite artifacts with a parity-checked manifest.

Public entry points: `export_checkpoint(checkpoint, target, out_dir)` and `add_export_parser(subparsers)`.
Heavy imports (torch, converters) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from .cli import add_export_parser, run_export
from .targets import TARGETS, get_target


def export_checkpoint(checkpoint, target: str, out_dir, options=None):
    """Export a HF Whisper checkpoint directory for `target` into `out_dir`; returns the manifest path."""
    from .pipeline import export_checkpoint as _export

    return _export(checkpoint, target, out_dir, options)


__all__ = ["TARGETS", "add_export_parser", "export_checkpoint", "get_target", "run_export"]
