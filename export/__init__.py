"""edge_askd_export: Whisper checkpoint -> ONNX / OpenVINO IR / TFLite artifacts with a parity-checked manifest.

Public entry point: `export_checkpoint(checkpoint, target, out_dir)`; the command line is `edge_askd_export.cli`.
Heavy imports (torch, converters) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from .targets import TARGETS, get_target


def export_checkpoint(checkpoint, target: str, out_dir, options=None):
    """Export a HF Whisper checkpoint directory for `target` into `out_dir`; returns the manifest path."""
    from .pipeline import export_checkpoint as _export

    return _export(checkpoint, target, out_dir, options)


__all__ = ["TARGETS", "export_checkpoint", "get_target"]
