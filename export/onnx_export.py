"""ONNX export of the encoder / decoder-step graphs, plus dynamic int8 and fp16 variants.

torch.onnx.export(dynamo=True, opset 18) stores the tied embedding / proj_out matrix once (the legacy exporter
duplicates it) and keeps the encoder's time axis dynamic.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from .graphs import DecoderStepGraph, EncoderGraph, GraphDims, example_inputs

OPSET = 18


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The dynamo exporter is chatty (progress lines, "no translation" notes); errors still raise.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
            verbose=False,
            report=False,
        )
    program.save(str(path), external_data=False)
    return path


def export_encoder(model: torch.nn.Module, path: Path) -> Path:
    """Encoder with a dynamic time axis (any T up to 2 * max_source_positions mel frames)."""
    dims = GraphDims.from_config(model.config)
    (mel,), _ = example_inputs(dims, frames=dims.max_mel_frames)
    frames = torch.export.Dim("frames", min=2, max=dims.max_mel_frames)
    return _export(
        EncoderGraph(model).eval(),
        (mel,),
        path,
        dims.encoder_input_names(),
        dims.encoder_output_names(),
        ({2: frames},),
    )


def export_decoder(model: torch.nn.Module, path: Path) -> Path:
    """Decoder step; the cross K/V's source axis is dynamic so it pairs with the dynamic encoder."""
    dims = GraphDims.from_config(model.config)
    _, args = example_inputs(dims, frames=dims.max_mel_frames)
    source = torch.export.Dim("source", min=1, max=dims.max_source_positions)
    n_cache = 2 * dims.decoder_layers
    # forward(token, offset, *caches): the varargs form one nested entry.
    dynamic = (None, None, (None,) * n_cache + ({2: source},) * n_cache)
    return _export(
        DecoderStepGraph(model).eval(), args, path, dims.decoder_input_names(), dims.decoder_output_names(), dynamic
    )


def quantize_int8(src: Path, dst: Path, quantize_convs: bool = False) -> Path:
    """Dynamic int8 (QInt8 weights, per-channel) of MatMul/Gemm/Gather, and of Conv if `quantize_convs`.

    Float convs are the default (`ExportOptions.quantize_convs`): ConvInteger has no fast kernel in ONNX
    Runtime's CPU provider (tiny.en 30 s encoder 369 vs 322 ms) and int8 convs raise the encoder's error.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm", "Gather", *(["Conv"] if quantize_convs else [])],
    )
    import onnx

    from .onnx_tied_projection import rewrite_tied_projection

    model = onnx.load(str(dst))
    if rewrite_tied_projection(model):  # the decoder's logits: keep the tied table int8 (see that module)
        onnx.save(model, str(dst))
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and compute with fp32 inputs/outputs, for GPU execution providers (CUDA / TensorRT)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # keep_io_types: the runtime feeds float32 everywhere, whatever the precision inside.
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))
    return dst
