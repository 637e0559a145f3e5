"""INT8 coverage: compute layers and MACs that take INT8 inputs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgeseg.precision.coverage import int8_coverage


def _graph() -> object:
    w1 = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [
        # conv1: activation and weight through Q/DQ -> INT8
        helper.make_node("QuantizeLinear", ["x", "s"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w1", "s"], ["w1q"]),
        helper.make_node("DequantizeLinear", ["w1q", "s"], ["w1d"]),
        helper.make_node("Conv", ["xd", "w1d"], ["y1"], pads=[1, 1, 1, 1]),
        # conv2: kept in float
        helper.make_node("Conv", ["y1", "w2"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], [w1, w2, s])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_counts_layers_and_macs_by_precision() -> None:
    cov = int8_coverage(_graph())
    conv1 = 1 * 4 * 8 * 8 * (3 * 3 * 3)  # outputs x taps
    conv2 = 1 * 2 * 8 * 8 * 4
    assert (cov.layers, cov.layers_int8) == (2, 1)
    assert (cov.macs, cov.macs_int8) == (conv1 + conv2, conv1)
    assert cov.to_dict()["share_macs"] == round(conv1 / (conv1 + conv2), 4)
