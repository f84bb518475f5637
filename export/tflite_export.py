"""TFLite (LiteRT) via litert-torch: every length bucket as a pair of signatures in one .tflite file.

TFLite wants static shapes, so each bucket (mel frames) needs its own encoder graph and a decoder graph whose
cross K/V length matches it. Each graph becomes one signature (`encoder_<frames>`, `decoder_<frames>`) of a
single flatbuffer: litert-torch stores a weight shared by several signatures once, so an extra bucket costs only
its bucket-specific constants (the encoder's position-embedding slice) instead of a whole model. Measured on
tiny.en with 2 decoder layers, int8, buckets 1000/2000/3000: one file per graph 3 x 34.9 = 104.7 MB, one
multi-signature file 40.8 MB; same outputs and step latency.
The manifest lists the buckets and their signature names; the runtime pads the waveform to the smallest bucket
that fits and runs that bucket's signatures.

int8 is dynamic-range (int8 weights, float activations) by ai-edge-quantizer on the fp32 flatbuffer, which is
what litert-torch's `full_dynamic_recipe` does internally; quantizing the fp32 conversion ourselves reuses it
for both precisions and lets the front-end convs stay float (see `ExportOptions.quantize_convs`).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from .graphs import DecoderStepGraph, EncoderGraph, GraphDims, example_inputs


def signature_names(frames: int) -> dict[str, str]:
    return {"encoder": f"encoder_{frames}", "decoder": f"decoder_{frames}"}


def convert_fp32(model, dims: GraphDims, buckets: list[int]) -> tuple[bytes, dict[str, dict[str, str]]]:
    """One fp32 flatbuffer holding an encoder and a decoder signature per bucket -> (bytes, {frames: names})."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import litert_torch

    logging.getLogger("absl").setLevel(logging.ERROR)
    # The same module objects for every bucket: shared parameters are what lets the converter store them once.
    encoder, decoder = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    converter = litert_torch.Converter()
    signatures: dict[str, dict[str, str]] = {}
    for frames in buckets:
        enc_args, dec_args = example_inputs(dims, frames=frames)
        names = signature_names(frames)
        converter.signature(names["encoder"], encoder, enc_args).signature(names["decoder"], decoder, dec_args)
        signatures[str(frames)] = names
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return converter.convert().model_content(), signatures


def write(content: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def quantize_int8(fp32: bytes, path: Path, quantize_convs: bool) -> Path:
    """Dynamic-range int8 (per-channel symmetric int8 weights) of every supported op; CONV_2D (the front end's
    conv1d layers) stays float unless `quantize_convs`."""
    from ai_edge_quantizer import Quantizer, recipe

    rules = recipe.dynamic_wi8_afp32()
    if not quantize_convs:
        # Later rules take precedence over the catch-all rule above.
        rules.append({"regex": ".*", "operation": "CONV_2D", "algorithm_key": "no_quantize", "op_config": {}})
    quantizer = Quantizer(fp32, rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write(bytes(quantizer.quantize().quantized_model), path)
