"""Dynamic int8 with one scale per row: the encoder's fc2 at the int8 GEMM's speed without per-tensor's error.

fc2 reads GELU's output. Quantized per tensor (DynamicQuantizeLinear), one frame with large activations sets the
scale for every frame, and the encoder's cross K/V fall 7-17 dB further from fp32; weight-only (MatMulNBits,
activations per block of 128) keeps them but runs ~120 G multiply-adds a second where the u8 x s8 GEMM of
MatMulInteger runs ~540 G on a Xeon with AMX: fc2 was a sixth of the encoder's multiply-adds and a third of its
time (docs/encoder-int8). One scale and zero point per row (per frame) is as close to fp32 as per block
(simulated on the default student, fc2 alone quantized: 37.5 / 36.1 dB against 38.3 / 36.3 on clean-en /
telephone-dev, per tensor 22.5 / 31.1), and keeps the fast kernel:

    lo, hi  = min(row, 0), max(row)                  # per row of x [.., S, K]
    scale   = (hi - lo) / 255,  zp = round(-lo / scale)
    xq      = QuantizeLinear(x, scale, zp, axis=rows) # uint8
    y       = (MatMulInteger(xq, Wq) - zp x colsum(Wq)) * scale * w_scale

with Wq int8 per output channel (w_scale). ONNX Runtime's MatMulInteger takes only one zero point for A, so the
per-row zero points are subtracted after the GEMM as an outer product (exact in integer arithmetic).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_LEVELS = 255.0
_MIN_SCALE = 1e-12  # an all-zero row (digital silence) quantizes to zeros instead of dividing by zero


def quantize_rows(model: onnx.ModelProto, matmuls: list[str]) -> int:
    """Replace each named `MatMul(x, W)` (W a 2-D float initializer, x [.., S, K]) in place by dynamic int8 with
    per-row activation scales; returns how many were replaced."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    wanted = set(matmuls)
    float_weights = []
    for node in list(graph.node):
        if node.name not in wanted or node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if weight.ndim != 2:
            continue
        index = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(_row_quantized_matmul(graph, node, weight)):
            graph.node.insert(index + offset, new)
        float_weights.append(node.input[1])
    read = {name for n in graph.node for name in n.input}
    for name in set(float_weights) - read:  # replaced by their int8 copies
        graph.initializer.remove(inits[name])
    return len(float_weights)


def _row_quantized_matmul(graph: onnx.GraphProto, node: onnx.NodeProto, weight: np.ndarray) -> list[onnx.NodeProto]:
    x, out, p = node.input[0], node.output[0], node.name or node.output[0]
    w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
    wq = np.clip(np.round(weight / w_scale), -127, 127).astype(np.int8)
    constants = {
        f"{p}_wq": wq,
        f"{p}_wscale": w_scale.astype(np.float32),
        f"{p}_colsum": wq.astype(np.int64).sum(axis=0).astype(np.float32),  # exact: |sum| < 2^24
        f"{p}_last": np.array([-1], dtype=np.int64),  # the reduced axis, and the flattened shape
        f"{p}_zero": np.array(0.0, dtype=np.float32),
        f"{p}_inv_levels": np.array(1.0 / _LEVELS, dtype=np.float32),
        f"{p}_min_scale": np.array(_MIN_SCALE, dtype=np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())

    def op(kind: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
        return helper.make_node(kind, inputs, [f"{p}_{output}"], name=f"{p}_{output}", **attrs)

    return [
        op("ReduceMax", [x, f"{p}_last"], "hi", keepdims=1),
        op("ReduceMin", [x, f"{p}_last"], "min", keepdims=1),
        op("Min", [f"{p}_min", f"{p}_zero"], "lo"),  # the range holds 0, so 0 (padding, silence) is exact
        op("Sub", [f"{p}_hi", f"{p}_lo"], "range"),
        op("Mul", [f"{p}_range", f"{p}_inv_levels"], "raw_scale"),
        op("Max", [f"{p}_raw_scale", f"{p}_min_scale"], "scale"),
        op("Div", [f"{p}_lo", f"{p}_scale"], "neg_zp"),
        op("Neg", [f"{p}_neg_zp"], "unrounded_zp"),
        op("Round", [f"{p}_unrounded_zp"], "zp"),
        op("Reshape", [f"{p}_scale", f"{p}_last"], "row_scale"),
        op("Reshape", [f"{p}_zp", f"{p}_last"], "row_zp_f"),
        op("Cast", [f"{p}_row_zp_f"], "row_zp", to=TensorProto.UINT8),
        op("QuantizeLinear", [x, f"{p}_row_scale", f"{p}_row_zp"], "xq", axis=-2),
        op("MatMulInteger", [f"{p}_xq", f"{p}_wq"], "acc"),
        op("Cast", [f"{p}_acc"], "acc_f", to=TensorProto.FLOAT),
        op("Mul", [f"{p}_zp", f"{p}_colsum"], "zp_sum"),
        op("Sub", [f"{p}_acc_f", f"{p}_zp_sum"], "centred"),
        op("Mul", [f"{p}_centred", f"{p}_scale"], "row_scaled"),
        helper.make_node("Mul", [f"{p}_row_scaled", f"{p}_wscale"], [out], name=f"{p}_out"),
    ]
