"""Fuse the ONNX encoder's self-attention into ONNX Runtime's MultiHeadAttention, whose CPU kernel is a flash attention.

The exported encoder computes each layer's attention as the exporter writes `scaled_dot_product_attention` out:
q, k and v ([1, S, d], q already scaled) reshaped and transposed per head, a MatMul to the full [1, H, S, S] score
matrix, Softmax, a MatMul with v, and the heads transposed back. For 11 s of speech (550 frames, base) each score
matrix and its softmax are 9.7 MB, held in ONNX Runtime's arena at the encoder's peak. MultiHeadAttention (the
com.microsoft contrib op) takes q, k, v as [1, S, d] and on CPU runs MLAS's flash attention: the scores are never
materialised, so the encoder's peak and the arena after it shrink, and the layout nodes go. Only layout is
replaced: the projections (and whatever quantization they carry) and the q scale stay as they are.
"""

from __future__ import annotations

import onnx
from onnx import helper

from . import onnx_graph

_LAYOUT = ("Reshape", "Transpose")


def _layout_source(name: str, producers: dict[str, onnx.NodeProto], max_nodes: int = 6) -> str | None:
    """Walk up through Reshape/Transpose nodes from `name` to the tensor they rearrange -> its name, or None if
    `name` is not a rearrangement of one."""
    passed = 0
    while (node := producers.get(name)) is not None and node.op_type in _LAYOUT:
        name, passed = node.input[0], passed + 1
        if passed > max_nodes:
            return None
    return name if passed else None


def _layout_sink(name: str, consumers: dict[str, list[onnx.NodeProto]], max_nodes: int = 4) -> str | None:
    """Walk down a single chain of Reshape/Transpose nodes from `name` -> the last one's output, or None."""
    passed = 0
    while len(users := consumers.get(name, [])) == 1 and users[0].op_type in _LAYOUT:
        name, passed = users[0].output[0], passed + 1
        if passed > max_nodes:
            return None
    return name if passed else None


def fuse_self_attention(model: onnx.ModelProto, heads: int) -> int:
    """Rewrite every `MatMul(q', k') -> Softmax -> MatMul(., v')` whose q', k', v' are rearrangements of [1, S, d]
    tensors (and whose output is rearranged back to one) as one MultiHeadAttention over those tensors, with scale
    1 (the exporter scaled q already); returns how many were fused. Nodes left without a reader are removed."""
    graph = model.graph
    fused = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        producers, consumers = onnx_graph.producers(graph), onnx_graph.consumers(graph)
        scores = producers.get(softmax.input[0])
        after = consumers.get(softmax.output[0], [])
        if scores is None or scores.op_type != "MatMul" or len(after) != 1 or after[0].op_type != "MatMul":
            continue
        mixed = after[0]
        q = _layout_source(scores.input[0], producers)
        k = _layout_source(scores.input[1], producers)
        v = _layout_source(mixed.input[1], producers)
        out = _layout_sink(mixed.output[0], consumers)
        if None in (q, k, v, out) or mixed.input[0] != softmax.output[0]:
            continue
        attention = helper.make_node(
            "MultiHeadAttention",
            [q, k, v],
            [out],
            domain="com.microsoft",
            num_heads=heads,
            scale=1.0,
            name=f"{softmax.name or softmax.output[0]}_mha",
        )
        # The old chain's last node wrote `out`: rename its output so the fused node is the only writer.
        last = producers.get(out)
        if last is not None:
            last.output[0] = f"{out}_unfused"
        graph.node.insert(list(graph.node).index(mixed), attention)
        fused += 1
    if fused:
        _remove_dead_nodes(graph)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return fused


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes none of whose outputs is read (by a node or as a graph output), until none is left."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output if o)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
