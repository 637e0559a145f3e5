"""A tiny explicitly quantized (Q/DQ) convolution graph, as the INT8 precision stage writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_qdq_conv_onnx(path: Path, *, size: int = 16, classes: int = 3) -> Path:
    """images (1,3,H,W) → Q/DQ → Conv 3x3 (per-channel symmetric int8 weights) → logits (1,K,H,W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((classes, 3, 3, 3)).astype(np.float32)
    w_scale = (np.abs(weight).reshape(classes, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(4.0 / 127, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(w_q, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(classes, np.int8), "w_zero"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["images", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
        helper.make_node("Conv", ["x_dq", "w_dq", "bias"], ["logits"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "qdq_conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, size, size])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture()
def qdq_onnx(tmp_path: Path) -> Path:
    return write_qdq_conv_onnx(tmp_path / "model.int8.onnx")
