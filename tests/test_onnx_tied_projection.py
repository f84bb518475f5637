"""The int8 decoder's tied embedding / output projection stays int8: structure and numerics on a small tied graph,
and the real exported decoder."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge_askd_export.onnx_export import externalize_weights, quantize_int8, step_weight_bytes
from edge_askd_export.onnx_tied_projection import rewrite_tied_projection


def _tied_model(path, vocab=500, d=32, seed=0):
    """token [1, 1] -> Gather(E) -> LayerNorm-free MLP -> logits = h @ E^T (Whisper's tied head)."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab, d)).astype(np.float32)
    mix = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "token"], ["emb"]),
        helper.make_node("MatMul", ["emb", "W"], ["h"]),
        helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
        helper.make_node("MatMul", ["h", "Et"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tied",
        [helper.make_tensor_value_info("token", TensorProto.INT64, [1, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, vocab])],
        [numpy_helper.from_array(table, "E"), numpy_helper.from_array(mix, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return table, mix


def _run(path, token):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"token": np.array([[token]], dtype=np.int64)})[0][0, 0]


def test_rewrite_keeps_logits_and_removes_the_float_copy(tmp_path):
    table, mix = _tied_model(tmp_path / "fp32.onnx")
    # The quantizer's own output, before our rewrite, is the reference for the int8 numerics.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(tmp_path / "fp32.onnx"),
        str(tmp_path / "plain.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm", "Gather"],
    )
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    model = onnx.load(str(tmp_path / "int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    consumers = {i for n in model.graph.node if n.op_type == "Transpose" for i in n.input}
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert not consumers & dequantized  # no DequantizeLinear -> Transpose left to constant-fold into fp32
    assert "MatMulInteger" in ops
    tables = [i for i in model.graph.initializer if np.prod(i.dims) == table.size]
    assert len(tables) == 1 and tables[0].data_type in (TensorProto.INT8, TensorProto.UINT8)  # stored once, int8

    for token in (0, 7, 499):
        exact = (table[token] @ mix) @ table.T
        plain, ours = _run(tmp_path / "plain.onnx", token), _run(tmp_path / "int8.onnx", token)
        scale = np.abs(exact).max()
        assert np.abs(ours - exact).max() < 0.05 * scale  # int8 error only
        assert np.abs(ours - plain).max() < 0.05 * scale
        assert int(np.argmax(ours)) == int(np.argmax(exact))


def test_rewrite_is_a_no_op_without_a_tied_projection(tmp_path):
    _tied_model(tmp_path / "fp32.onnx")
    model = onnx.load(str(tmp_path / "fp32.onnx"))  # fp32: no DequantizeLinear at all
    assert rewrite_tied_projection(model) == 0


def test_exported_int8_decoder_has_an_int8_head(teacher_export):
    import json

    manifest = json.loads((teacher_export / "manifest.json").read_text())
    int8 = next(v for v in manifest["variants"] if v["name"] == "onnx-int8")
    assert int8["quantization"]["decoder"] == "dynamic"  # the Pi 4's choice (Target.onnx_int8_decoder)
    model = onnx.load(str(teacher_export / "onnx" / "decoder.int8.onnx"))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers["logits"] == "Mul"
    assert "MatMulInteger" in [n.op_type for n in model.graph.node if n.name.endswith("_mmi")]
    big = [i for i in model.graph.initializer if np.prod(i.dims) > 10_000_000]
    assert big and all(i.data_type in (TensorProto.INT8, TensorProto.UINT8) for i in big)


def test_weight_only_decoder_stores_the_tied_table_once_and_gathers_its_int8_rows(tmp_path):
    """MatMulNBits (8-bit blocks) for the head, and the token lookup reads the same blocks: no fp32 table left,
    the looked-up rows are the quantized table's, the logits those of the int8 head. d = 160 leaves the last
    128-wide block padded, as a lookup must handle."""
    table, mix = _tied_model(tmp_path / "fp32.onnx", vocab=600, d=160)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "wo.onnx", scheme="weight_only")
    model = onnx.load(str(tmp_path / "wo.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulNBits") == 2 and "Transpose" not in ops and "MatMulInteger" not in ops
    floats = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and np.prod(i.dims) >= 600 * 160]
    assert not floats  # the fp32 table is gone: int8 blocks only
    # The lookup reads its own copy of the head's blocks: ONNX Runtime frees a repacked initializer only when no
    # other node reads it, and a copy stored externally stays mapped, untouched but for the looked-up rows.
    blocks = [i for i in model.graph.initializer if i.data_type == TensorProto.UINT8 and i.dims[0] == 600]
    readers = [sorted({n.op_type for n in model.graph.node if b.name in n.input}) for b in blocks]
    assert sorted(readers) == [["Gather"], ["MatMulNBits"]]
    assert np.array_equal(*(numpy_helper.to_array(b) for b in blocks))

    # The embedding the graph looks up equals the int8-rounded table: compare through h = emb @ W.
    probe = helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 1, 160])
    model.graph.output.append(probe)
    onnx.save(model, str(tmp_path / "probe.onnx"))
    session = ort.InferenceSession(str(tmp_path / "probe.onnx"), providers=["CPUExecutionProvider"])
    for token in (0, 13, 599):
        logits, emb = session.run(None, {"token": np.array([[token]], dtype=np.int64)})
        row = table[token]
        assert emb.shape == (1, 1, 160) and np.abs(emb[0, 0] - row).max() < 0.02 * np.abs(row).max()
        assert not np.array_equal(emb[0, 0], row)  # rounded to int8 blocks, not the float row
        exact = (row @ mix) @ table.T
        assert np.abs(logits[0, 0] - exact).max() < 0.05 * np.abs(exact).max()
        assert int(np.argmax(logits[0, 0])) == int(np.argmax(exact))


def test_externalized_weights_load_alike_and_the_step_counts_no_lookup_table(tmp_path):
    """externalize_weights moves the weights into FILE.data, which ONNX Runtime maps; the graph computes the same
    logits. step_weight_bytes counts what one step reads whole: not the Gather-only copy of the table."""
    _tied_model(tmp_path / "fp32.onnx", vocab=600, d=160)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "wo.onnx", scheme="weight_only")
    inline = onnx.load(str(tmp_path / "wo.onnx"))
    sizes = {i.name: numpy_helper.to_array(i).nbytes for i in inline.graph.initializer}
    lookup = {n.input[0] for n in inline.graph.node if n.op_type == "Gather" and n.input[0] in sizes}
    before = [_run(tmp_path / "wo.onnx", token) for token in (0, 599)]
    inline_bytes = step_weight_bytes(tmp_path / "wo.onnx")

    data = externalize_weights(tmp_path / "wo.onnx")
    assert data == tmp_path / "wo.onnx.data" and data.stat().st_size >= 600 * 160 * 2
    assert (tmp_path / "wo.onnx").stat().st_size < 50_000  # the graph alone
    externalize_weights(tmp_path / "wo.onnx")  # again (an export's retry): rewritten, not appended to
    assert data.stat().st_size < 2 * 600 * 160 * 2
    for token, logits in zip((0, 599), before, strict=True):
        assert np.array_equal(_run(tmp_path / "wo.onnx", token), logits)
    expected = sum(size for name, size in sizes.items() if name not in lookup)
    assert lookup and step_weight_bytes(tmp_path / "wo.onnx") == inline_bytes == expected
