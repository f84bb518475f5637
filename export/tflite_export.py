"""TFLite (LiteRT) via litert-torch: one static-shape encoder + decoder pair per length bucket.

TFLite wants static shapes, so each bucket (mel frames) gets its own encoder and a decoder whose cross K/V
length matches it; the manifest lists the buckets and the runtime pads the waveform to the smallest that fits.
int8 is litert-torch's dynamic-range recipe (int8 weights, float activations), run with ai-edge-litert.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from .graphs import DecoderStepGraph, EncoderGraph, GraphDims, example_inputs


def _convert(module: torch.nn.Module, args: tuple, path: Path, precision: str) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import litert_torch

    logging.getLogger("absl").setLevel(logging.ERROR)
    kwargs = {}
    if precision == "int8":
        from litert_torch.generative.quantize import quant_recipes

        kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
    elif precision != "fp32":
        raise ValueError(f"TFLite precision {precision!r} is not supported; use fp32 or int8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        litert_torch.convert(module.eval(), args, **kwargs).export(str(path))
    return path


def convert_pair(model, dims: GraphDims, out_dir: Path, frames: int, precision: str) -> tuple[Path, Path]:
    enc_args, dec_args = example_inputs(dims, frames=frames)
    enc = _convert(EncoderGraph(model), enc_args, out_dir / f"encoder.{frames}.{precision}.tflite", precision)
    dec = _convert(DecoderStepGraph(model), dec_args, out_dir / f"decoder.{frames}.{precision}.tflite", precision)
    return enc, dec
