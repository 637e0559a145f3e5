"""onnxsim simplification: node counts recorded, graph still valid and equivalent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.export import simplify_onnx
from edgeseg.runners.onnxrt import OnnxrtRunner


def test_node_counts_are_recorded(dbmsnet_onnx: tuple) -> None:
    raw, sim, result = dbmsnet_onnx
    assert result.nodes_before == len(onnx.load(raw).graph.node)
    assert result.nodes_after == len(onnx.load(sim).graph.node)
    assert result.nodes_after <= result.nodes_before
    assert result.output_check == "passed"
    assert result.op_types == dict(Counter(n.op_type for n in onnx.load(sim).graph.node))


def test_simplified_graph_keeps_io_and_metadata(dbmsnet_onnx: tuple) -> None:
    raw, sim, _ = dbmsnet_onnx
    a, b = onnx.load(raw), onnx.load(sim)
    assert [i.name for i in b.graph.input] == ["images"] and [o.name for o in b.graph.output] == ["logits"]
    assert {p.key for p in b.metadata_props} == {p.key for p in a.metadata_props}
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with OnnxrtRunner(raw) as ra, OnnxrtRunner(sim) as rb:
        np.testing.assert_allclose(ra.infer({"images": x})["logits"], rb.infer({"images": x})["logits"],
                                   rtol=1e-4, atol=1e-4)


def test_simplify_rejects_a_non_model(tmp_path: Path) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"\x00\x01garbage")
    with pytest.raises(EdgesegError, match="x.onnx"):
        simplify_onnx(bogus, tmp_path / "y.onnx")
    assert not (tmp_path / "y.onnx").exists()


def test_equality_check_catches_a_changed_graph() -> None:
    from onnx import TensorProto, helper

    from edgeseg.export.simplify import _check_equal

    def graph(op: str) -> onnx.ModelProto:
        nodes = [helper.make_node(op, ["images"], ["logits"])]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4]) for n in ("images", "logits")]
        return helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:]),
                                 opset_imports=[helper.make_opsetid("", 18)])

    _check_equal(graph("Relu"), graph("Relu"), [1, 3, 4, 4], label="same")
    with pytest.raises(EdgesegError, match="differs from the original"):
        _check_equal(graph("Relu"), graph("Identity"), [1, 3, 4, 4], label="changed")
