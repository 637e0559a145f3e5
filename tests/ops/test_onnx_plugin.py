"""Plugin-form ONNX: one EdgesegFusedDDC node per fused block, runnable on the CPU in ONNX Runtime."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.ops import fuse_model, fused_ddc
from edgeseg.ops.onnx_plugin import (
    MAX_DILATION,
    PLUGIN_DOMAIN,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    plugin_node_problems,
    plugin_nodes,
)
from edgeseg.ops.ort_custom_op import (
    from_onnxruntime_graph,
    ort_session,
    register_custom_ops,
    to_onnxruntime_graph,
)


def test_plugin_graph_matches_standard_graph(tiny_ddc_net, export_proto) -> None:
    x = torch.randn(2, 3, 24, 33)
    standard = export_proto(tiny_ddc_net, x, plugin=False)
    fused = fuse_model(copy.deepcopy(tiny_ddc_net))
    plugin = export_proto(fused, x, plugin=True)
    onnx.checker.check_model(plugin)

    nodes = plugin_nodes(plugin)
    assert len(nodes) == 3 and not plugin_nodes(standard)
    assert {"Conv", "Concat", "Transpose"} & {n.op_type for n in standard.graph.node}
    assert (PLUGIN_DOMAIN, 1) in {(o.domain, o.version) for o in plugin.opset_import}
    initializers = {t.name for t in plugin.graph.initializer}
    for node, dilations in zip(nodes, [(1, 3, 5, 7), (5, 7, 11, 13), (13, 15, 17, 19)], strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.op_type == PLUGIN_NAME and node.domain == PLUGIN_DOMAIN
        assert attrs == {"dilations": list(dilations), "plugin_version": b"1", "plugin_namespace": b"edgeseg"}
        assert len(node.input) == 6  # x, weight, scale, shift, pooled, residual
        assert set(node.input[1:4]) <= initializers  # weight / scale / shift are initializers

    feed = {"images": x.numpy()}
    expected = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feed
    )
    got = ort_session(plugin).run(None, feed)
    with torch.no_grad():
        torch_out = tiny_ddc_net(x).numpy()
    np.testing.assert_allclose(got[0], expected[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[0], torch_out, atol=1e-5, rtol=0)


class _NoResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("weight", torch.randn(4, 2, 3, 3, generator=g))
        self.register_buffer("scale", torch.rand(4, 2, generator=g) + 0.5)
        self.register_buffer("shift", torch.randn(4, 2, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_ddc(x, self.weight, (1, 2, 3, 5), self.scale, self.shift, x.mean((2, 3)), None)


def test_plugin_node_without_residual(export_proto) -> None:
    model = _NoResidual().eval()
    x = torch.randn(1, 2, 9, 14)
    proto = export_proto(model, x, plugin=True)
    (node,) = plugin_nodes(proto)
    assert len(node.input) == 5
    got = ort_session(proto).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-6, rtol=0)


def _plugin_node(**changes: object) -> onnx.NodeProto:
    fields: dict = {
        "inputs": ["x", "w", "s", "b", "p"],
        "dilations": [1, 3, 5, 7],
        "plugin_version": "1",
        "plugin_namespace": "edgeseg",
    }
    fields.update(changes)
    attrs = {k: v for k, v in fields.items() if k != "inputs" and v is not None}
    return onnx.helper.make_node(
        PLUGIN_NAME, fields["inputs"], ["y"], name="ddc", domain=PLUGIN_DOMAIN, **attrs
    )


# What TensorRT's parser or the plugin's creator refuses (onnx-tensorrt's fallback plugin importer
# looks the creator up by name/plugin_version/plugin_namespace; createPlugin checks the dilations).
BROKEN_NODES = {
    "dilations": (_plugin_node(dilations=[1, 3, 5]), "'dilations' must be 4 INTS in 1..1024"),
    "no dilations": (_plugin_node(dilations=None), "'dilations' must be 4 INTS"),
    "dilation past the creator's limit": (_plugin_node(dilations=[1, 2, 3, 4096]), "1..1024"),
    "wrong version": (_plugin_node(plugin_version="2"), "plugin_version/plugin_namespace"),
    "empty namespace": (_plugin_node(plugin_namespace=""), "plugin_version/plugin_namespace"),
    "no namespace": (_plugin_node(plugin_namespace=None), "plugin_version/plugin_namespace"),
    "too few inputs": (_plugin_node(inputs=["x"]), "expected 5 or 6 inputs"),
    "unnamed residual": (_plugin_node(inputs=["x", "w", "s", "b", "p", ""]), "must be named"),
}


@pytest.mark.parametrize("case", BROKEN_NODES)
def test_plugin_nodes_rejects_broken_node(case: str) -> None:
    node, message = BROKEN_NODES[case]
    graph = onnx.helper.make_graph([node], "g", [], [])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1)])
    assert plugin_node_problems(_plugin_node()) == []
    with pytest.raises(EdgesegError, match=re.escape(message)):
        plugin_nodes(model)
    model.opset_import.pop()
    with pytest.raises(EdgesegError, match="no 'edgeseg' opset_import"):
        plugin_nodes(model)


def test_python_constants_match_the_cpp_creator() -> None:
    """The exporter and the C++ creator must agree on name, version, namespace and dilation limit."""
    root = Path(__file__).resolve().parents[2] / "cpp_ext" / "plugin"
    header = (root / "fusedDDCPlugin.h").read_text()
    source = (root / "fusedDDCPlugin.cpp").read_text()
    constants = dict(re.findall(r'constexpr char const\* (kFusedDDC\w+) = "([^"]*)";', header))
    assert constants == {
        "kFusedDDCName": PLUGIN_NAME,
        "kFusedDDCVersion": PLUGIN_VERSION,
        "kFusedDDCNamespace": PLUGIN_NAMESPACE,
    }
    assert re.search(rf"v < 1 \|\| v > {MAX_DILATION}\b", source)


def test_onnxruntime_round_trip_through_onnxsim(tiny_ddc_net, export_proto) -> None:
    # The path for tools that run ONNX Runtime themselves: rewrite, run the tool with the custom-op
    # library, rewrite back; the plugin nodes come back exactly as exported.
    import onnxsim

    x = torch.randn(1, 3, 16, 20)
    plugin = export_proto(fuse_model(copy.deepcopy(tiny_ddc_net)), x, plugin=True)
    ort_form = to_onnxruntime_graph(plugin)
    assert not plugin_nodes(ort_form)
    simplified, ok = onnxsim.simplify(ort_form, check_n=1, custom_lib=register_custom_ops())
    assert ok
    restored = from_onnxruntime_graph(simplified)

    def attributes(model: onnx.ModelProto) -> list[dict]:
        return [
            {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in plugin_nodes(model)
        ]

    assert attributes(restored) == attributes(plugin)
    assert {o.domain for o in restored.opset_import} == {"", PLUGIN_DOMAIN}
    got = ort_session(restored).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, tiny_ddc_net(x).numpy(), atol=1e-5, rtol=0)
