"""TensorRT-compatibility check: accepts real exports, rejects what TensorRT's parser rejects."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.errors import EdgesegError
from edgeseg.export import check_trt_compat, find_trt_issues
from edgeseg.export.trt_compat import TRT_SUPPORTED_OPS


def _model(nodes: list, initializers: list | None = None, opset: int = 18,
           extra_opsets: list | None = None, inputs: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers or [],
    )
    opsets = [helper.make_opsetid("", opset), *(extra_opsets or [])]
    return helper.make_model(graph, opset_imports=opsets)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _resize(name: str, **attrs: object) -> tuple[onnx.NodeProto, list]:
    scales = _const("scales", np.array([1, 1, 2, 2], dtype=np.float32))
    return helper.make_node("Resize", ["x", "", "scales"], ["y"], name=name, mode="linear", **attrs), [scales]


def test_real_exports_pass(dbmsnet_onnx: tuple) -> None:
    raw, sim, _ = dbmsnet_onnx
    for path in (raw, sim):
        report = check_trt_compat(path)
        assert report.opset == 18 and report.num_nodes > 50 and report.plugins == []


def test_supported_table_matches_the_parser_docs() -> None:
    # Spot checks against onnx-tensorrt docs/operators.md (release/10.1-GA).
    used = {"Conv", "Resize", "QuantizeLinear", "DequantizeLinear", "ArgMax", "ReduceMean"}
    assert used <= TRT_SUPPORTED_OPS
    assert not {"Unique", "STFT", "ConvInteger", "QLinearConv", "Col2Im"} & TRT_SUPPORTED_OPS


def test_resize_restrictions() -> None:
    node, inits = _resize("up_ok", coordinate_transformation_mode="half_pixel")
    assert find_trt_issues(_model([node], inits)) == []
    node, inits = _resize("up_aa", coordinate_transformation_mode="half_pixel", antialias=1)
    with pytest.raises(EdgesegError, match=r"node 'up_aa' \(Resize\): antialias=1"):
        check_trt_compat(_model([node], inits))
    node, inits = _resize("up_cubic", coordinate_transformation_mode="half_pixel")
    node.attribute[0].s = b"cubic"
    issues = find_trt_issues(_model([node], inits))
    assert [i.node for i in issues] == ["up_cubic"] and "cubic" in issues[0].reason
    node, inits = _resize("up_tf", coordinate_transformation_mode="tf_crop_and_resize")
    assert "tf_crop_and_resize" in find_trt_issues(_model([node], inits))[0].reason


def test_unsupported_op_and_opset() -> None:
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    with pytest.raises(EdgesegError, match=r"node 'uniq' \(Unique\): op not supported"):
        check_trt_compat(_model([node]))
    relu = helper.make_node("Relu", ["x"], ["y"], name="r")
    issues = find_trt_issues(_model([relu], opset=21))
    assert [(i.node, i.op_type) for i in issues] == [("<model>", "opset")]


def _qdq(zero_point: np.ndarray) -> onnx.ModelProto:
    inits = [_const("s", np.array(0.1, dtype=np.float32)), _const("zp", zero_point)]
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q1")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq1")
    return _model([q, dq], inits, opset=19)


def test_qdq_zero_point_and_type() -> None:
    assert find_trt_issues(_qdq(np.array(0, dtype=np.int8))) == []
    issues = find_trt_issues(_qdq(np.array(3, dtype=np.int8)))
    assert {i.node for i in issues} == {"q1", "dq1"} and all("must be 0" in i.reason for i in issues)
    issues = find_trt_issues(_qdq(np.array(0, dtype=np.uint8)))
    assert {i.node for i in issues} == {"q1", "dq1"} and all("UINT8" in i.reason for i in issues)
    # No zero point: QuantizeLinear produces uint8, which TensorRT cannot take.
    q = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q_default")
    issues = find_trt_issues(_model([q], [_const("s", np.array(0.1, dtype=np.float32))], opset=19))
    assert [i.node for i in issues] == ["q_default"]


def test_conv_weights_must_be_constant() -> None:
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4, 3, 3])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_dyn", pads=[1, 1, 1, 1])
    issues = find_trt_issues(_model([conv], inputs=[x, w]))
    assert [i.node for i in issues] == ["conv_dyn"] and "initializer" in issues[0].reason
    # Weights through DequantizeLinear of an initializer are fine (INT8 Q/DQ graphs).
    inits = [_const("wq", np.ones((4, 4, 3, 3), dtype=np.int8)), _const("ws", np.full(4, 0.1, np.float32)),
             _const("wz", np.zeros(4, dtype=np.int8))]
    dq = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wf"], name="dqw", axis=0)
    conv = helper.make_node("Conv", ["x", "wf"], ["y"], name="conv_q", pads=[1, 1, 1, 1])
    assert find_trt_issues(_model([dq, conv], inits, opset=19)) == []


def test_custom_domain_only_for_known_plugins() -> None:
    plugin = helper.make_node("EdgesegFusedDDC", ["x", "w", "s", "b", "p"], ["y"], name="ddc0",
                              domain="edgeseg", dilations=[1, 2, 4, 8], plugin_version="1",
                              plugin_namespace="edgeseg")
    model = _model([plugin], extra_opsets=[helper.make_opsetid("edgeseg", 1)])
    assert check_trt_compat(model).plugins == ["EdgesegFusedDDC"]
    # Our own plugin's node is held to what the parser and the creator accept.
    bare = helper.make_node("EdgesegFusedDDC", ["x"], ["y"], name="ddc1", domain="edgeseg")
    issues = find_trt_issues(_model([bare], extra_opsets=[helper.make_opsetid("edgeseg", 1)]))
    assert [i.node for i in issues] == ["ddc1"] * 3
    assert ["plugin_version" in issues[0].reason, "dilations" in issues[1].reason,
            "inputs" in issues[2].reason] == [True, True, True]
    other = helper.make_node("FusedConv", ["x"], ["y"], name="ms0", domain="com.microsoft")
    with pytest.raises(EdgesegError, match=r"node 'ms0' \(com.microsoft::FusedConv\): custom-domain op"):
        check_trt_compat(_model([other], extra_opsets=[helper.make_opsetid("com.microsoft", 1)]))


def test_one_error_lists_every_failing_node() -> None:
    nodes = [helper.make_node("Unique", ["x"], ["a"], name="bad_a"),
             helper.make_node("STFT", ["a"], ["y"], name="bad_b")]
    with pytest.raises(EdgesegError) as err:
        check_trt_compat(_model(nodes), label="model.int8.onnx")
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.int8.onnx: not TensorRT-compatible (2 problems)")
    assert "'bad_a'" in message and "'bad_b'" in message
