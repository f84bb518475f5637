"""Per-row dynamic int8 (export/onnx_row_quant.py), run in ONNX Runtime against numpy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge_askd_export.onnx_row_quant import quantize_rows

ROWS, K, N = 40, 256, 64


def _matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc2")],
        "fc2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "rows", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "rows", N])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _gelu_like_activations(rng: np.random.Generator) -> np.ndarray:
    """GELU-shaped rows (min -0.17, a long positive tail), one of them 40x louder, one digital silence."""
    x = rng.standard_normal((1, ROWS, K)).astype(np.float32)
    x = np.maximum(x, -0.17)
    x[0, 3] *= 40.0
    x[0, 7] = 0.0
    return x


def test_rows_are_quantized_each_with_its_own_scale_and_zero_point(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    x = _gelu_like_activations(rng)
    reference = x @ weight

    model = _matmul_model(weight)
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    assert quantize_rows(model, ["fc2"]) == 1
    assert not any(n.op_type == "MatMul" for n in model.graph.node)
    assert {"QuantizeLinear", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
    assert "w" not in {i.name for i in model.graph.initializer}  # the float weight is gone
    per_row = _run(model, x)

    # numpy's per-row uint8 quantization with the same per-channel int8 weight
    lo, hi = np.minimum(x.min(-1, keepdims=True), 0), x.max(-1, keepdims=True)
    scale = np.maximum((hi - lo) / 255, 1e-12)
    zp = np.round(-lo / scale)
    xq = np.clip(np.round(x / scale) + zp, 0, 255)
    w_scale = np.abs(weight).max(0) / 127
    expected = ((xq - zp) * scale) @ (np.round(weight / w_scale) * w_scale)
    np.testing.assert_allclose(per_row, expected, rtol=1e-4, atol=1e-4)
    assert np.all(per_row[0, 7] == 0)  # silence stays exactly zero

    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "tensor.onnx"), weight_type=QuantType.QInt8)
    per_tensor = _run(onnx.load(str(tmp_path / "tensor.onnx")), x)
    quiet = [r for r in range(ROWS) if r not in (3, 7)]

    def error(y: np.ndarray) -> float:
        return float(np.sqrt(np.mean((y[0, quiet] - reference[0, quiet]) ** 2)))

    # the loud row sets every row's scale per tensor; per row the quiet rows keep their resolution
    assert error(per_row) < 0.2 * error(per_tensor), (error(per_row), error(per_tensor))


def test_only_named_float_matmuls_are_replaced():
    rng = np.random.default_rng(1)
    model = _matmul_model((rng.standard_normal((K, N)) * 0.05).astype(np.float32))
    assert quantize_rows(model, ["another"]) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
