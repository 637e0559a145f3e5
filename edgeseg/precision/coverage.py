"""How much of a Q/DQ graph really runs in INT8: compute layers and their multiply-accumulates.

A guard that keeps too many layers in higher precision can pass its gates with a graph that is
INT8 in name only; the report states the share so that nobody mistakes one for the other.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Int8Coverage", "int8_coverage"]

_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Int8Coverage:
    """Compute layers of a graph and how many of them (and of their MACs) take INT8 inputs.

    Attributes:
        layers: compute layers (Conv, ConvTranspose, Gemm, MatMul).
        layers_int8: those whose activation input comes out of a DequantizeLinear.
        macs: their multiply-accumulates for one image.
        macs_int8: the INT8 layers' share of them.
    """

    layers: int
    layers_int8: int
    macs: int
    macs_int8: int

    @property
    def share_macs(self) -> float:
        return self.macs_int8 / self.macs if self.macs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "layers_int8": self.layers_int8, "macs": self.macs,
                "macs_int8": self.macs_int8, "share_macs": round(self.share_macs, 4)}


def int8_coverage(path_or_model: str | os.PathLike[str] | Any) -> Int8Coverage:
    """Count the compute layers of an ONNX graph (path or ModelProto) that run on INT8 inputs."""
    import onnx
    from onnx import numpy_helper

    model = path_or_model
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(path_or_model), load_external_data=False)
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    weights = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:  # Constant nodes carry weights too
        if node.op_type == "Constant" and node.attribute:
            weights[node.output[0]] = list(numpy_helper.to_array(node.attribute[0].t).shape)

    def weight_shape(name: str) -> list[int] | None:
        # A quantized weight reaches the layer through DequantizeLinear(QuantizeLinear(initializer)).
        node = producer.get(name)
        while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast", "Identity"):
            name = node.input[0]
            node = producer.get(name)
        return weights.get(name)

    layers = layers_int8 = macs = macs_int8 = 0
    for node in graph.node:
        if node.op_type not in _COMPUTE_OPS or len(node.input) < 2:
            continue
        w = weight_shape(node.input[1])
        out = shapes.get(node.output[0])
        if w is None or not out:
            continue
        if node.op_type == "Conv":  # weight (Cout, Cin/groups, kH, kW): one MAC per tap per output
            count = math.prod(out) * math.prod(w[1:])
        elif node.op_type == "ConvTranspose":  # weight (Cin, Cout/groups, kH, kW): per input element
            count = math.prod(shapes.get(node.input[0]) or [0]) * math.prod(w[1:])
        else:  # Gemm / MatMul: each output element sums over the shared dimension
            count = math.prod(out) * (w[0] if len(w) == 2 else w[-2])
        layers += 1
        macs += count
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "DequantizeLinear":
            layers_int8 += 1
            macs_int8 += count
    return Int8Coverage(layers, layers_int8, macs, macs_int8)
