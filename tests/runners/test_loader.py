"""runners.loader: one artifact → runner mapping, one ONNX Runtime policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeseg.build_folder import Precision
from edgeseg.errors import EdgesegError
from edgeseg.runners.loader import ort_settings, runner_for


def test_cpu_policy_runs_reduced_precision_graphs_as_written() -> None:
    assert ort_settings(Precision.FP32, gpu=False).graph_optimization == "all"
    # FP16: every tensor rounded to FP16 between ops, as written; INT8: Q/DQ as float fake-quant
    # (no fusion into ORT's integer kernels) with ORT's float optimizations.
    assert ort_settings("fp16", gpu=False).graph_optimization == "disabled"
    int8 = ort_settings("int8", gpu=False)
    assert int8.graph_optimization == "all" and int8.qdq_fusion is False
    assert ort_settings("fp32", gpu=False).qdq_fusion and ort_settings("fp16", gpu=False).qdq_fusion
    for p in ("fp16", "int8"):
        assert ort_settings(p, gpu=True).graph_optimization == "all" and ort_settings(p, gpu=True).qdq_fusion
    assert ort_settings("int8", gpu=False).session_config == {"session.intra_op.allow_spinning": "0"}
    assert ort_settings("int8", gpu=True).session_config == {}
    # Graphs judged side by side give up ORT's CPU arena (it holds each session's peak activations).
    assert ort_settings("fp32", gpu=False).memory_arena
    assert not ort_settings("int8", gpu=False, side_by_side=True).memory_arena


def test_onnx_runner_takes_the_policy_of_the_graphs_precision(tmp_path: Path) -> None:
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [s])
    path = tmp_path / "anything.onnx"  # the name says nothing; the Q/DQ nodes do
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    runner = runner_for(path, side_by_side=True)
    assert runner.memory_arena is False
    assert runner.session_config["session.disable_quant_qdq"] == "1"  # type: ignore[attr-defined]
    with runner:
        out = runner.infer({"x": np.array([0.26, 1.0], dtype=np.float32)})
    np.testing.assert_allclose(out["y"], [0.5, 1.0])  # fake-quantized with scale 0.5


def test_unknown_artifact_kind(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match=r"x\.tflite: not a runnable artifact"):
        runner_for(tmp_path / "x.tflite")
