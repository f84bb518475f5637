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

from .onnx_graph import consumers


def rewrite_tied_projection(model: onnx.ModelProto) -> int:
    """Rewrite every `DequantizeLinear(W) -> Transpose -> MatMul(x, .)` on a 2-D quantized initializer in place;
    returns how many were rewritten (0 leaves the model untouched)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    rewritten = 0
    for dq in list(graph.node):
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        users = consumers(graph)  # afresh per candidate: each rewrite changes the graph's edges
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
    users = consumers(graph)
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


def _weight_only_projection(graph: onnx.GraphProto, inits: dict, vocab: int) -> onnx.NodeProto | None:
    """The MatMulNBits whose quantized weight has `vocab` rows: the decoder's output projection."""
    return next(
        (
            n
            for n in graph.node
            if n.op_type == "MatMulNBits" and n.input[1] in inits and inits[n.input[1]].dims[0] == vocab
        ),
        None,
    )


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
    users = consumers(graph)
    if table not in inits:
        return False
    vocab, d_model = inits[table].dims
    proj = _weight_only_projection(graph, inits, vocab)
    gathers = [n for n in users.get(table, []) if n.op_type == "Gather"]
    if proj is None or not gathers or (len(proj.input) > 3 and proj.input[3]):
        return False  # no projection of this table, or an asymmetric one (zero points)
    n_rows, n_blocks = inits[proj.input[1]].dims[:2]
    blocks, scales_2d = f"{proj.input[1]}_rows", f"{proj.input[2]}_rows"
    copy = graph.initializer.add()
    copy.CopyFrom(inits[proj.input[1]])
    copy.name = blocks
    rows = numpy_helper.to_array(inits[proj.input[2]]).reshape(n_rows, n_blocks)
    graph.initializer.append(numpy_helper.from_array(rows, scales_2d))
    for gather in gathers:
        out, tokens, tag = gather.output[0], gather.input[1], gather.name or gather.output[0]
        rank = len(_indices_shape(graph, tokens))
        lookup = _dequantized_rows(graph, blocks, scales_2d, tokens, rank, out, tag, d_model)
        position = list(graph.node).index(gather)
        graph.node.remove(gather)
        for offset, node in enumerate(lookup):
            graph.node.insert(position + offset, node)
    graph.initializer.remove(inits[table])
    return True


def _dequantized_rows(
    graph: onnx.GraphProto, blocks: str, scales: str, ids: str, ids_rank: int, out: str, tag: str, d_model: int
) -> list[onnx.NodeProto]:
    """Nodes that look up rows `ids` (rank `ids_rank`) of a symmetric 8-bit block table (`blocks` uint8 [V, n_blocks,
    block], zero point 128; `scales` float [V, n_blocks]) and dequantize them into `out` [*ids.shape, d_model]; their
    constants go into `graph`. Where d_model is not a multiple of the block, the last block's padding is cut."""
    inits = {i.name: i for i in graph.initializer}
    n_blocks, block = inits[blocks].dims[1], inits[blocks].dims[2]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(128.0, np.float32), f"{tag}_center"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{tag}_last"),
            numpy_helper.from_array(np.array([0] * ids_rank + [n_blocks * block], np.int64), f"{tag}_shape"),
        ]
    )
    padded = n_blocks * block != d_model
    nodes = [
        helper.make_node("Gather", [blocks, ids], [f"{tag}_q"], axis=0, name=f"{tag}_rows"),
        helper.make_node("Cast", [f"{tag}_q"], [f"{tag}_qf"], to=TensorProto.FLOAT, name=f"{tag}_cast"),
        helper.make_node("Sub", [f"{tag}_qf", f"{tag}_center"], [f"{tag}_c"], name=f"{tag}_centred"),
        helper.make_node("Gather", [scales, ids], [f"{tag}_s"], axis=0, name=f"{tag}_scales"),
        helper.make_node("Unsqueeze", [f"{tag}_s", f"{tag}_last"], [f"{tag}_s1"], name=f"{tag}_unsq"),
        helper.make_node("Mul", [f"{tag}_c", f"{tag}_s1"], [f"{tag}_blocks"], name=f"{tag}_dequant"),
        helper.make_node(
            "Reshape", [f"{tag}_blocks", f"{tag}_shape"], [f"{tag}_padded" if padded else out], name=f"{tag}_flat"
        ),
    ]
    if padded:
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([0], np.int64), f"{tag}_start"),
                numpy_helper.from_array(np.array([d_model], np.int64), f"{tag}_end"),
            ]
        )
        nodes.append(
            helper.make_node(
                "Slice", [f"{tag}_padded", f"{tag}_start", f"{tag}_end", f"{tag}_last"], [out], name=f"{tag}_cut"
            )
        )
    return nodes


def coarse_projection_with_exact_rescoring(
    model: onnx.ModelProto, weight: np.ndarray, candidates: int, bits: int = 4, block: int = 32
) -> bool:
    """After `gather_from_weight_only_projection`: the output projection at `bits` (a coarse pass that reads about
    half the int8 head's bytes), then its top `candidates` logits of every row recomputed exactly from the int8
    rows the token lookup already keeps (float hidden state times dequantized row, no activation rounding), and
    written back over the coarse ones. The graph's logits keep their shape and meaning: exact where a token can
    win, coarse elsewhere, so the loop and its token rules are unchanged.

    `weight` is the projection's float [d, V] matrix (what the quantizer saw). Returns False where the decoder has
    no rewritten weight-only projection (then the model is untouched)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    d_model, vocab = weight.shape
    proj = _weight_only_projection(graph, inits, vocab)
    rows, scales = (f"{proj.input[1]}_rows", f"{proj.input[2]}_rows") if proj is not None else ("", "")
    if proj is None or rows not in inits or scales not in inits:
        return False
    # Quantize the projection alone at `bits`: a one-MatMul model through the same quantizer as every other weight.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d_model])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, vocab])
    single = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="head")],
            "head",
            [x],
            [y],
            [numpy_helper.from_array(weight.astype(np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    config = DefaultWeightOnlyQuantConfig(
        block_size=block, is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",), bits=bits
    )
    quantizer = MatMulNBitsQuantizer(single, algo_config=config)
    quantizer.process()
    small = quantizer.model.model.graph
    coarse_node = next(n for n in small.node if n.op_type == "MatMulNBits")
    small_inits = {i.name: i for i in small.initializer}
    for old in proj.input[1:3]:
        graph.initializer.remove(inits[old])
    for position, source in ((1, coarse_node.input[1]), (2, coarse_node.input[2])):
        tensor = graph.initializer.add()
        tensor.CopyFrom(small_inits[source])
        tensor.name = f"{proj.name}_coarse_{position}"
        proj.input[position] = tensor.name
    del proj.attribute[:]
    proj.attribute.extend(coarse_node.attribute)

    hidden, logits = proj.input[0], proj.output[0]
    tag, coarse = proj.name, f"{proj.output[0]}_coarse"
    proj.output[0] = coarse
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([min(candidates, vocab)], np.int64), f"{tag}_k"),
            numpy_helper.from_array(np.array([2], np.int64), f"{tag}_axis2"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{tag}_sum_axis"),
        ]
    )
    nodes = [
        helper.make_node("TopK", [coarse, f"{tag}_k"], [f"{tag}_top", f"{tag}_ids"], axis=-1, name=f"{tag}_topk"),
        *_dequantized_rows(graph, rows, scales, f"{tag}_ids", 3, f"{tag}_w", f"{tag}_candidates", d_model),
        helper.make_node("Unsqueeze", [hidden, f"{tag}_axis2"], [f"{tag}_h"], name=f"{tag}_h"),
        helper.make_node("Mul", [f"{tag}_w", f"{tag}_h"], [f"{tag}_prod"], name=f"{tag}_prod"),
        helper.make_node(
            "ReduceSum", [f"{tag}_prod", f"{tag}_sum_axis"], [f"{tag}_exact"], keepdims=0, name=f"{tag}_exact"
        ),
        helper.make_node(
            "ScatterElements", [coarse, f"{tag}_ids", f"{tag}_exact"], [logits], axis=-1, name=f"{tag}_write"
        ),
    ]
    position = list(graph.node).index(proj) + 1
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    return True
