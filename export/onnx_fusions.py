"""Fewer, larger nodes in a weight-only (MatMulNBits) graph: what ONNX Runtime's session optimizer leaves unfused.

A decoder step at batch 1 is a few hundred tiny kernels, and on a 2-core CPU each costs a thread-pool dispatch
whatever its size, so the node count is part of the per-token time. The session's own graph optimizer fuses
LayerNormalization but not the exporter's residual `Add -> LayerNormalization`, nor its erf GELU
(`Div, Erf, Add, Mul, Mul`), nor the bias `Add` after each projection. `fuse_weight_only_graph`:

  * runs onnxruntime.transformers' fusions for SkipLayerNormalization and Gelu (attention fusion stays off: the
    graph's attention reads an external cache that those patterns do not describe);
  * moves each remaining constant bias `Add` after a MatMulNBits into the MatMulNBits' own bias input.

Base decoder: 339 -> ~250 nodes. The arithmetic is the same up to float summation order (the parity gate that
follows every quantized file judges it like any other).
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

_BIAS_INPUT = 5  # MatMulNBits inputs: A, B, scales, zero_points, g_idx, bias


def fuse_weight_only_graph(path: Path) -> dict[str, int]:
    """Rewrite the MatMulNBits model at `path` in place; returns its node counts before and after."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    before = len(onnx.load(str(path), load_external_data=False).graph.node)
    options = FusionOptions("bart")
    options.enable_attention = False
    options.enable_embed_layer_norm = False
    # The optimizer logs each fusion, and warns that num_heads and hidden_size were not given (attention is off).
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimize_model(
        str(path),
        model_type="bart",
        num_heads=0,  # only the attention fusion reads these, and it is off
        hidden_size=0,
        optimization_options=options,
        opt_level=0,  # the session optimizer does the rest at load
        use_gpu=False,
    )
    model = optimized.model
    folded = fold_matmul_nbits_bias(model)
    onnx.save(model, str(path))
    return {"nodes_before": before, "nodes_after": len(model.graph.node), "biases_folded": folded}


def fold_matmul_nbits_bias(model: onnx.ModelProto) -> int:
    """`Add(MatMulNBits(x), b)` with b a 1-D initializer of the output width -> MatMulNBits(x, bias=b), in place;
    returns how many were folded."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    removed: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "MatMulNBits" or len(node.input) > _BIAS_INPUT or node.output[0] in outputs:
            continue
        consumers = users.get(node.output[0], [])
        if len(consumers) != 1 or consumers[0].op_type != "Add":
            continue
        add = consumers[0]
        bias = next((name for name in add.input if name != node.output[0]), None)
        width = next((a.i for a in node.attribute if a.name == "N"), None)
        if bias not in inits or list(inits[bias].dims) != [width]:
            continue
        node.input.extend([""] * (_BIAS_INPUT - len(node.input)) + [bias])
        node.output[0] = add.output[0]
        removed.append(add)
    for add in removed:
        graph.node.remove(add)
    return len(removed)
