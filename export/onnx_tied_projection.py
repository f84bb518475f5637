"""Rewrite the int8 decoder's tied output projection so it stays int8 in memory and in compute.

Whisper ties the token embedding and the output projection. After `quantize_dynamic`, the embedding table is one
uint8 initializer used twice: by the token Gather (fine) and by `DequantizeLinear -> Transpose -> MatMul` for the
logits. ONNX Runtime constant-folds that chain at load into an fp32 transposed copy of the whole table (80 MB for
tiny.en, 106 MB for base), which is most of the runtime's resident memory, briefly doubled during load, and every
decoder step then runs an fp32 [d, 51864] MatMul. Measured on tiny.en (rpi4 export, 2 threads): peak RSS at load
365 -> 158 MB, decode time of a 3 s clip 0.51 -> 0.24 s, identical transcripts.

After the rewrite the table is stored once, transposed ([d, V] uint8): the logits use DynamicQuantizeLinear +
MatMulInteger on it (the same dynamic-quantization pattern as every other int8 MatMul), and the token lookup
gathers one column of it (axis 1) and transposes that [d, 1, 1] slice back to [1, 1, d].

The weight-only scheme (MatMulNBits) has the same problem in another form: its quantizer only takes a constant
MatMul weight, so the projection is first made one (`untie_projection_for_weight_only`), and after quantization
the token lookup is pointed at the head's uint8 blocks and dequantizes the rows it gathers
(`gather_from_weight_only_projection`), instead of keeping the fp32 table for the Gather alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def rewrite_tied_projection(model: onnx.ModelProto) -> int:
    """Rewrite every `DequantizeLinear(W) -> Transpose -> MatMul(x, .)` on a 2-D quantized initializer in place;
    returns how many were rewritten (0 leaves the model untouched)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    rewritten = 0
    for dq in list(graph.node):
        users = _consumers(graph)
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        after = users.get(dq.output[0], [])
        if len(after) != 1 or after[0].op_type != "Transpose":
            continue
        transpose = after[0]
        mms = users.get(transpose.output[0], [])
        if len(mms) != 1 or mms[0].op_type != "MatMul" or mms[0].input[1] != transpose.output[0]:
            continue
        matmul = mms[0]
        weight = numpy_helper.to_array(inits[dq.input[0]])
        if weight.ndim != 2:
            continue
        name, scale, zero = dq.input[0], dq.input[1], dq.input[2]
        transposed = f"{name}_transposed"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), transposed))
        x, out = matmul.input[0], matmul.output[0]
        mmi_inputs = [f"{x}_q", transposed, f"{x}_zp", zero]
        logits = [
            helper.make_node("DynamicQuantizeLinear", [x], [f"{x}_q", f"{x}_s", f"{x}_zp"], name=f"{matmul.name}_q"),
            helper.make_node("MatMulInteger", mmi_inputs, [f"{out}_i32"], name=f"{matmul.name}_mmi"),
            helper.make_node("Cast", [f"{out}_i32"], [f"{out}_f32"], to=TensorProto.FLOAT, name=f"{matmul.name}_cast"),
            helper.make_node("Mul", [f"{x}_s", scale], [f"{out}_scale"], name=f"{matmul.name}_scale"),
            helper.make_node("Mul", [f"{out}_f32", f"{out}_scale"], [out], name=f"{matmul.name}_out"),
        ]  # fmt: skip
        position = list(graph.node).index(matmul)
        for node in (dq, transpose, matmul):
            graph.node.remove(node)
        position -= 2  # dq and transpose came before the matmul
        for offset, node in enumerate(logits):
            graph.node.insert(position + offset, node)
        # The token lookup reads the same table: gather a column of the transposed copy instead.
        for gather in [n for n in graph.node if n.op_type == "Gather" and n.input[0] == name]:
            axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
            if axis != 0:
                continue
            column = f"{gather.output[0]}_column"
            rank = 1 + len(_indices_shape(graph, gather.input[1]))
            gather.input[0] = transposed
            del gather.attribute[:]
            gather.attribute.append(helper.make_attribute("axis", 1))
            original = gather.output[0]
            gather.output[0] = column
            perm = list(range(1, rank)) + [0]  # [d, *idx] -> [*idx, d]
            back = helper.make_node("Transpose", [column], [original], perm=perm, name=f"{gather.name}_back")
            graph.node.insert(list(graph.node).index(gather) + 1, back)
        if not any(name in n.input for n in graph.node):
            graph.initializer.remove(inits[name])
        rewritten += 1
    return rewritten


def _indices_shape(graph: onnx.GraphProto, name: str) -> list:
    """Static shape of a graph input (the decoder's token ids are [1, 1])."""
    for value in list(graph.input) + list(graph.value_info):
        if value.name == name:
            return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
    raise ValueError(f"shape of {name} unknown; the token Gather must read a graph input")


def untie_projection_for_weight_only(model: onnx.ModelProto) -> str | None:
    """Before MatMulNBits quantization: make the projection's `Transpose(table)` a constant [d, V] initializer so
    the quantizer sees a plain MatMul weight. Returns the table's name (still read by the token Gather), or None."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users = _consumers(graph)
    for transpose in list(graph.node):
        if transpose.op_type != "Transpose" or transpose.input[0] not in inits:
            continue
        table = transpose.input[0]
        mms = users.get(transpose.output[0], [])
        gathers = [n for n in users.get(table, []) if n.op_type == "Gather"]
        if len(mms) != 1 or mms[0].op_type != "MatMul" or not gathers:
            continue
        weight = numpy_helper.to_array(inits[table])
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), transpose.output[0]))
        graph.node.remove(transpose)
        return table
    return None


def gather_from_weight_only_projection(model: onnx.ModelProto, table: str) -> bool:
    """After 8-bit MatMulNBits quantization: the token Gather reads the projection's quantized blocks ([V, blocks,
    block] uint8, one byte per weight, per-block scales, symmetric: zero point 128) and dequantizes the rows it
    picks, instead of keeping an fp32 table for the Gather alone (106 MB for base).

    The Gather reads its own copy of the blocks and scales, not the projection's initializers: ONNX Runtime frees
    an initializer that MatMulNBits has repacked only when no other node reads it, so a shared table was held twice
    in memory (the original and the repacked copy, 26.6 MB for base). The copy costs as much on disk, but with the
    weights stored externally (`onnx_export.externalize_weights`) it stays mapped, untouched but for the rows the
    tokens look up: the base decoder's session 106 -> 80 MB resident."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users = _consumers(graph)
    if table not in inits:
        return False
    vocab, d_model = inits[table].dims
    proj = next(
        (
            n
            for n in graph.node
            if n.op_type == "MatMulNBits" and n.input[1] in inits and inits[n.input[1]].dims[0] == vocab
        ),
        None,
    )
    gathers = [n for n in users.get(table, []) if n.op_type == "Gather"]
    if proj is None or not gathers or (len(proj.input) > 3 and proj.input[3]):
        return False  # no projection of this table, or an asymmetric one (zero points)
    n_rows, n_blocks, block = inits[proj.input[1]].dims
    blocks, scales_2d = f"{proj.input[1]}_rows", f"{proj.input[2]}_rows"
    copy = graph.initializer.add()
    copy.CopyFrom(inits[proj.input[1]])
    copy.name = blocks
    rows = numpy_helper.to_array(inits[proj.input[2]]).reshape(n_rows, n_blocks)
    graph.initializer.append(numpy_helper.from_array(rows, scales_2d))
    graph.initializer.append(numpy_helper.from_array(np.array(128.0, np.float32), f"{table}_zero"))
    for gather in gathers:
        out, tokens, tag = gather.output[0], gather.input[1], gather.name or gather.output[0]
        rank = len(_indices_shape(graph, tokens))
        shape = f"{out}_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([0] * rank + [n_blocks * block], np.int64), shape))
        padded = n_blocks * block != d_model  # the last block is zero-padded when d_model is not a multiple
        lookup = [
            helper.make_node("Gather", [blocks, tokens], [f"{out}_q"], axis=0, name=f"{tag}_rows"),
            helper.make_node("Cast", [f"{out}_q"], [f"{out}_qf"], to=TensorProto.FLOAT, name=f"{tag}_cast"),
            helper.make_node("Sub", [f"{out}_qf", f"{table}_zero"], [f"{out}_c"], name=f"{tag}_center"),
            helper.make_node("Gather", [scales_2d, tokens], [f"{out}_s"], axis=0, name=f"{tag}_scales"),
            helper.make_node("Unsqueeze", [f"{out}_s", f"{table}_last"], [f"{out}_s1"], name=f"{tag}_unsq"),
            helper.make_node("Mul", [f"{out}_c", f"{out}_s1"], [f"{out}_blocks"], name=f"{tag}_scale"),
            helper.make_node(
                "Reshape", [f"{out}_blocks", shape], [f"{out}_padded" if padded else out], name=f"{tag}_row"
            ),
        ]
        if padded:
            ends = f"{out}_ends"
            graph.initializer.append(numpy_helper.from_array(np.array([d_model], np.int64), ends))
            lookup.append(
                helper.make_node("Slice", [f"{out}_padded", f"{table}_zero_index", ends, f"{table}_last"], [out])
            )
        position = list(graph.node).index(gather)
        graph.node.remove(gather)
        for offset, node in enumerate(lookup):
            graph.node.insert(position + offset, node)
    graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), f"{table}_last"))
    graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), f"{table}_zero_index"))
    graph.initializer.remove(inits[table])
    return True
