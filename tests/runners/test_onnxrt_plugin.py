"""OnnxrtRunner on plugin-form graphs (``EdgesegFusedDDC`` nodes): same outputs as the standard-op graph."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.ops import fuse_model
from edgeseg.ops.onnx_plugin import plugin_nodes
from edgeseg.runners import OnnxrtRunner


def test_plugin_graph_runs_like_the_standard_graph(tiny_ddc_net: nn.Module, export_proto: Callable,
                                                    tmp_path: Path) -> None:
    x = torch.randn(2, 3, 20, 27)
    standard = export_proto(tiny_ddc_net, x, plugin=False)
    plugin = export_proto(fuse_model(copy.deepcopy(tiny_ddc_net)), x, plugin=True)
    assert len(plugin_nodes(plugin)) == 3
    # Weights in a side file, as large exports are written: the runner must load them too.
    path = tmp_path / "plugin.onnx"
    # (onnx.save moves the tensors of the proto it is given out to the file: save a copy.)
    onnx.save(copy.deepcopy(plugin), path, save_as_external_data=True, location="plugin.onnx.data",
              size_threshold=0)
    assert (tmp_path / "plugin.onnx.data").is_file()

    feed = {"images": x.numpy()}
    with OnnxrtRunner(standard.SerializeToString(), graph_optimization="disabled") as ref:
        expected = ref.infer(feed)["logits"]
    for model in (path, plugin.SerializeToString()):
        with OnnxrtRunner(model, graph_optimization="disabled", intra_op_threads=1) as runner:
            assert [m.name for m in runner.get_input_metadata()] == ["images"]
            assert [m.name for m in runner.get_output_metadata()] == ["logits"]
            got = runner.infer(feed)["logits"]
            # The runner's own session options still apply to the rewritten graph.
            assert runner.session.get_session_options().intra_op_num_threads == 1
        assert got.shape == expected.shape == (2, 3, 20, 27)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert len(plugin_nodes(onnx.load(path))) == 3  # the file itself is never rewritten


def test_broken_plugin_node_is_a_runner_error(tiny_ddc_net: nn.Module, export_proto: Callable) -> None:
    x = torch.randn(1, 3, 8, 8)
    plugin = export_proto(fuse_model(tiny_ddc_net), x, plugin=True)
    node = plugin_nodes(plugin)[0]
    (dilations,) = [a for a in node.attribute if a.name == "dilations"]
    del dilations.ints[-1]
    with pytest.raises(EdgesegError, match=r"^onnxrt:<bytes>: .*'dilations' must be 4 INTS in 1..1024"):
        OnnxrtRunner(plugin.SerializeToString()).activate()
