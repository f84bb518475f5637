"""ONNX export of the encoder / decoder-step graphs, plus int8 (dynamic or weight-only) and fp16 variants.

torch.onnx.export(dynamo=True, opset 18) stores the tied embedding / proj_out matrix once (the legacy exporter
duplicates it) and keeps the encoder's time axis dynamic.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .graphs import DecoderStepGraph, EncoderGraph, GraphDims, example_inputs

OPSET = 18
PROMPT_EXAMPLE_TOKENS = 4  # the multilingual prompt's length; any size >= 2 keeps the token axis dynamic


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


def export_decoder(model: torch.nn.Module, path: Path, cache_in_graph: bool = False) -> Path:
    """Decoder step; the cross K/V's source axis is dynamic so it pairs with the dynamic encoder, the token
    axis so the whole prompt goes in one call, the self-attention cache's slot axis so a step gets only the
    filled slots. `cache_in_graph`: all 448 slots in, the updated cache out (a fixed shape a GPU runtime keeps
    on the device, see graphs.DecoderStepGraph). Logits come for every token of a call, so one call can verify a
    drafted continuation (the previous partial's tokens, decoding.greedy_decode)."""
    dims = GraphDims.from_config(model.config)
    _, args = example_inputs(dims, frames=dims.max_mel_frames, tokens=PROMPT_EXAMPLE_TOKENS)
    source = torch.export.Dim("source", min=1, max=dims.max_source_positions)
    tokens = torch.export.Dim("tokens", min=1, max=dims.max_target_positions)
    slots = None if cache_in_graph else {2: torch.export.Dim("slots", min=1, max=dims.max_target_positions)}
    n_cache = 2 * dims.decoder_layers
    # forward(token, offset, *caches): the varargs form one nested entry.
    dynamic = ({1: tokens}, None, (slots,) * n_cache + ({2: source},) * n_cache)
    return _export(
        DecoderStepGraph(model, cache_in_graph, every_position=True).eval(),
        args,
        path,
        dims.decoder_input_names(),
        dims.decoder_output_names(cache_in_graph),
        dynamic,
    )


WEIGHT_ONLY_BLOCK = 128  # base-e6d2 encoder, 7 clips: block 128 agreement 0.966 at 92 ms / 10 s; block 32 0.978 at 106
# The decoder's activations are quantized per block too, and its logits pick among close candidates. Trained base-dyn
# student, fp32 encoder, the 157 real-set clips (clean-en / telephone-dev), token agreement with the fp32 decoder
# and WER (fp32: 1.16 / 5.13 %), ms per decoder call on a 22 s clip, 2 threads, AMD EPYC:
#   block 128: 0.957 / 0.993, 2.89 / 5.43 %, 3.7-3.9 ms   block 64: 0.979 / 0.994, 1.16 / 5.28 %, 3.7 ms
#   block 32:  0.996 / 0.997, 1.16 / 5.28 %, 4.2-4.4 ms   block 16: 1.000 / 0.990, 1.16 / 5.43 %, 4.5 ms
#   (4-bit weights, blocks 32-128: 0.875-0.944 on clean-en for 6-20 % less time per call; fp32 compute on int8
#   weights, accuracy_level 1: 0.983 at 206 ms per call.)
DECODER_WEIGHT_ONLY_BLOCK = 32


@dataclass(frozen=True)
class CoarseHead:
    """The int8 decoder's output projection as a coarse pass plus exact rescoring of its best `candidates` per
    row (onnx_tied_projection.coarse_projection_with_exact_rescoring)."""

    candidates: int = 16
    bits: int = 4
    # The coarse pass only has to rank the winner among its top candidates, so its blocks can be coarse: on the
    # default student, all 164 real clips, blocks of 32, 64, 128 and 256 keep the same tokens (top 8 too), and
    # 128 reads 2.5 MB a step fewer than 32 (5 MB repacked; ~5 % less per call). 2 bits lose a third of the
    # tokens or more (docs/decoder-int8).
    block: int = 128


def quantize_int8(
    src: Path,
    dst: Path,
    quantize_convs: bool = False,
    scheme: str = "dynamic",
    block: int = WEIGHT_ONLY_BLOCK,
    coarse_head: CoarseHead | None = None,
) -> Path:
    """int8 weights of MatMul/Gemm/Gather (and of Conv if `quantize_convs`), in one of three schemes:

    - "dynamic": QInt8 per-channel weights and activations quantized per tensor at run time (MatMulInteger), the
      fastest on CPU. Float convs are the default (`ExportOptions.quantize_convs`): ConvInteger has no fast kernel
      in ONNX Runtime's CPU provider (tiny.en 30 s encoder 369 vs 322 ms) and int8 convs raise the encoder's error.
    - "weight_only": MatMulNBits with 8-bit symmetric weights in blocks of `block` along K
      (`WEIGHT_ONLY_BLOCK`; a decoder takes `DECODER_WEIGHT_ONLY_BLOCK`) and activations quantized per block
      (accuracy_level 4). Per-tensor activation scales are what break an encoder
      whose activations have outliers; see `ExportOptions.onnx_int8_encoder` for the measurements.
    - "mixed": dynamic, except the down projections (`down_projections`: fc2, after GELU), whose activations
      are quantized with one scale per row instead of per tensor (export/onnx_row_quant.py). For a
      SmoothQuant-ed encoder (export/smoothquant.py), whose other inputs have lost their outliers and GELU's
      output cannot: per tensor, one loud frame sets every frame's scale.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    if scheme == "weight_only":
        _quantize_weight_only(src, dst, block, coarse_head)
        if quantize_convs:
            quantize_dynamic(
                str(dst), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"]
            )
        return dst
    if scheme not in ("dynamic", "mixed"):
        raise ValueError(f"unknown ONNX int8 scheme {scheme!r}; use dynamic, weight_only or mixed")
    down = down_projections(src) if scheme == "mixed" else []
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm", "Gather", *(["Conv"] if quantize_convs else [])],
        nodes_to_exclude=down or None,
    )
    import onnx

    if scheme == "mixed":  # the down projections, left float above, quantized per row
        from .onnx_row_quant import quantize_rows

        model = onnx.load(str(dst))
        if quantize_rows(model, down) != len(down):
            raise RuntimeError(f"{src}: not every down projection could be quantized per row")
        onnx.save(model, str(dst))
        return dst

    from .onnx_tied_projection import rewrite_tied_projection

    model = onnx.load(str(dst))
    if rewrite_tied_projection(model):  # the decoder's logits: keep the tied table int8 (see that module)
        onnx.save(model, str(dst))
    return dst


def down_projections(path: Path) -> list[str]:
    """The MatMuls whose constant weight maps a wider input to a narrower output ([K, N], K > N): in a Whisper
    encoder exactly the FFN's fc2 (d_ffn -> d_model), the projection that reads GELU's output."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    narrowing = {name for name, dims in shapes.items() if len(dims) == 2 and dims[0] > dims[1]}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in narrowing]


def _quantize_weight_only(src: Path, dst: Path, block: int, coarse_head: CoarseHead | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(
        block_size=block,
        is_symmetric=True,
        accuracy_level=4,  # int8 compute on activations quantized per block: the fast MLAS path
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=("MatMul",),
        bits=8,
    )
    from .onnx_tied_projection import (
        coarse_projection_with_exact_rescoring,
        gather_from_weight_only_projection,
        untie_projection_for_weight_only,
    )

    model = onnx.load(str(src))
    table = untie_projection_for_weight_only(model)  # the decoder's tied table; None for the encoder
    weight = None
    if table is not None and coarse_head is not None:
        from onnx import numpy_helper

        weight = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == table)).T
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    if table is not None and not gather_from_weight_only_projection(quantizer.model.model, table):
        raise RuntimeError(f"{src}: the tied projection of {table} was not quantized as expected")
    if weight is not None and not coarse_projection_with_exact_rescoring(
        quantizer.model.model, weight, coarse_head.candidates, coarse_head.bits, coarse_head.block
    ):
        raise RuntimeError(f"{src}: the coarse output projection of {table} was not built as expected")
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def fuse_encoder_kernels(path: Path, heads: int) -> dict[str, int]:
    """Rewrite the encoder graph at `path` in place with ONNX Runtime's fused kernels -> how many of each were
    fused ({"attention": n, "gelu": m}; all 0 leaves the file as it was). Only for ONNX Runtime variants: other
    runtimes do not have these contrib ops.

    - attention: each layer's as one MultiHeadAttention (its CPU kernel is a flash attention; export/
      onnx_attention.py);
    - gelu: each erf GELU the exporter wrote out (Div, Erf, Add, Mul, Mul) as one Gelu. The session's own
      optimizer does not match the exporter's pattern, and in the encoder each of the five is a pass over a
      [S, 2048] tensor: the default student's int8 encoder at 5 / 10 s, 2 threads, 28.9 / 53.4 -> 26.9 / 49.2 ms
      (docs/encoder-int8)."""
    import onnx

    from .onnx_attention import fuse_self_attention

    model = onnx.load(str(path))
    fused = {"attention": fuse_self_attention(model, heads), "gelu": _fuse_gelu(model)}
    if any(fused.values()):
        onnx.save(model, str(path))
    return fused


def _fuse_gelu(model) -> int:
    """Each erf GELU of `model` as one Gelu, in place -> how many."""
    from onnxruntime.transformers.fusion_gelu import FusionGelu
    from onnxruntime.transformers.onnx_model import OnnxModel

    def gelus() -> int:
        return sum(node.op_type == "Gelu" for node in model.graph.node)

    before = gelus()
    wrapped = OnnxModel(model)
    FusionGelu(wrapped).apply()
    fused = gelus() - before
    if fused:
        wrapped.prune_graph()
    return fused


def weights_file(path: Path) -> Path:
    """Where `externalize_weights` puts the weights of the graph at `path`: FILE.onnx.data beside it."""
    return path.with_name(f"{path.name}.data")


def externalize_weights(path: Path) -> Path:
    """Rewrite `path` as a graph file plus its weights in `path`.data (ONNX external data), and return the latter.

    ONNX Runtime maps external weights from the file instead of copying them out of the parsed protobuf, and
    unmaps each one its kernel has repacked: the base student's int8 sessions took 36 + 80 instead of 53 + 123 MB
    of resident memory (AMD EPYC, ONNX Runtime 1.32; docs/runtime-memory). A table only looked up (the token
    embedding's rows) stays mapped and costs only the pages its tokens touch.
    """
    import onnx

    data = weights_file(path)
    model = onnx.load(str(path))  # the weights, wherever they are now (a rebuild finds its previous .data)
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, location=data.name, size_threshold=1024)
    return data


def step_weight_bytes(path: Path) -> int:
    """Bytes of the initializers one run of the graph at `path` reads whole: all of them but the tables only a
    Gather looks rows up in (the token embedding). What the bench's per-token floor divides by bandwidth."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import uses_external_data

    graph = onnx.load(str(path), load_external_data=False).graph
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    total = 0
    for init in graph.initializer:
        if readers.get(init.name) == {"Gather"}:
            continue
        if uses_external_data(init):
            total += int(next(e.value for e in init.external_data if e.key == "length"))
        else:
            total += numpy_helper.to_array(init).nbytes
    return total


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
