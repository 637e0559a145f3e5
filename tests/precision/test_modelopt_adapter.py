"""edgeseg.precision._modelopt: the indexed stand-in removes exactly the nodes modelopt's cleanup removes."""

from __future__ import annotations

import types

import onnx
import pytest
from onnx import TensorProto, helper

from edgeseg.precision._modelopt import _indexed_cleanup, _remove_unread_nodes


def _graph() -> onnx.ModelProto:
    """Live nodes, a chain of two dangling ones, a graph output read by no node, and empty names."""
    value = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="live"),
        helper.make_node("Cast", ["a"], ["dead1"], name="dangling_cast", to=TensorProto.FLOAT16),
        helper.make_node("Neg", ["a"], ["y"], name="to_output"),
        helper.make_node("Identity", ["a"], ["b"], name="read_by_resize"),
        helper.make_node("Resize", ["b", "", "scales"], ["z"], name="resize_with_empty_input"),
        helper.make_node("Dropout", ["a"], ["", "unread_mask"], name="empty_optional_output"),
        helper.make_node("Abs", ["dead1"], ["dead2"], name="dangling_abs"),
    ]
    graph = helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [value("y", TensorProto.FLOAT, None), value("z", TensorProto.FLOAT, None)],
                              [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])])
    return helper.make_model(graph)


def _names(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node]


def test_same_nodes_removed_as_modelopts_own_cleanup() -> None:
    pc = pytest.importorskip("modelopt.onnx.autocast.precisionconverter")
    ours, theirs = types.SimpleNamespace(model=_graph()), types.SimpleNamespace(model=_graph())
    _remove_unread_nodes(ours)
    pc.PrecisionConverter._cleanup_no_consumer_nodes(theirs)
    assert _names(ours.model) == _names(theirs.model)
    # One pass, as modelopt's: the Abs read by nothing goes, the Cast it read stays until a next
    # pass; the Dropout, whose empty output name the Resize's empty input "reads", stays in both.
    assert "dangling_abs" not in _names(ours.model) and "dangling_cast" in _names(ours.model)
    assert "empty_optional_output" in _names(ours.model)


def test_swapped_in_only_while_a_pass_runs() -> None:
    pc = pytest.importorskip("modelopt.onnx.autocast.precisionconverter")
    original = pc.PrecisionConverter.__dict__["_cleanup_no_consumer_nodes"]
    with _indexed_cleanup():
        assert pc.PrecisionConverter.__dict__["_cleanup_no_consumer_nodes"] is _remove_unread_nodes
    assert pc.PrecisionConverter.__dict__["_cleanup_no_consumer_nodes"] is original
