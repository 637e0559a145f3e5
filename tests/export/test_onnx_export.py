"""ONNX export: I/O contract, opset, TensorRT-friendly ops, numerical match with PyTorch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeseg.errors import EdgesegError
from edgeseg.export import ExportConfig, export_onnx, load_onnx, parse_batch_profile
from edgeseg.runners.onnxrt import OnnxrtRunner

from ._tiny import DBMS_CLASSES, DBMS_SIZE, TinySegNet


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def test_dbmsnet_io_contract_and_opset(dbmsnet_onnx: tuple) -> None:
    raw, _, _ = dbmsnet_onnx
    model = onnx.load(raw)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(model.graph.input[0]) == [1, 3, *DBMS_SIZE]
    assert _dims(model.graph.output[0]) == [1, DBMS_CLASSES, *DBMS_SIZE]
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 18)}
    # Weights are initializers of the graph, not inputs or external files.
    assert len(model.graph.initializer) > 10
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_dbmsnet_ops_are_tensorrt_friendly(dbmsnet_onnx: tuple) -> None:
    raw, _, _ = dbmsnet_onnx
    model = onnx.load(raw)
    ops = Counter(n.op_type for n in model.graph.node)
    # Adaptive pools became AveragePool / ReduceMean / Slice, not a Gather/Add explosion.
    assert ops["Gather"] == 0 and ops["GatherND"] == 0
    assert ops["AveragePool"] + ops["ReduceMean"] >= 4
    assert ops["Add"] < 40
    for node in model.graph.node:
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs.get("antialias", 0) == 0, node.name
            assert attrs["coordinate_transformation_mode"] in (b"half_pixel", b"pytorch_half_pixel",
                                                               b"align_corners"), node.name


def test_dbmsnet_onnxruntime_matches_pytorch(dbmsnet: torch.nn.Module, dbmsnet_onnx: tuple) -> None:
    raw, sim, _ = dbmsnet_onnx
    x = torch.randn(1, 3, *DBMS_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = dbmsnet(x).numpy()
    for path in (raw, sim):
        with OnnxrtRunner(path) as runner:
            got = runner.infer({"images": x.numpy()})["logits"]
        tolerance = 1e-3 * max(1.0, float(np.abs(expected).max()))
        assert np.abs(got - expected).max() < tolerance, path.name


def test_argmax_output_and_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TinySegNet(num_classes=4).eval()
    path = tmp_path / "labels.onnx"
    config = ExportConfig(input_size=(32, 48), batch_profile=(1, 2, 4), output="argmax")
    result = export_onnx(net, path, config)
    model = onnx.load(path)
    out = model.graph.output[0]
    assert out.name == "labels" and out.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert isinstance(_dims(model.graph.input[0])[0], str)  # symbolic batch
    assert _dims(out)[1:] == [32, 48]
    assert result.op_types.get("ArgMax") == 1
    with OnnxrtRunner(path) as runner:
        for batch in (1, 3):
            x = torch.randn(batch, 3, 32, 48)
            labels = runner.infer({"images": x.numpy()})["labels"]
            with torch.no_grad():
                expected = net(x).argmax(1).numpy()
            assert labels.shape == (batch, 32, 48)
            assert (labels == expected).mean() > 0.999


def test_opset_17_is_converted(tmp_path: Path) -> None:
    config = ExportConfig(input_size=(16, 16), opset=17)
    result = export_onnx(TinySegNet().eval(), tmp_path / "m.onnx", config)
    assert result.opset == 17
    assert {o.version for o in onnx.load(tmp_path / "m.onnx").opset_import if o.domain == ""} == {17}


@pytest.mark.parametrize("kwargs, message", [
    ({"opset": 21}, "opset must be in 17..20"), ({"opset": 16}, "opset must be in 17..20"),
    ({"batch": 0}, "batch must be >= 1"), ({"output": "probs"}, "output must be one of"),
    ({"batch_profile": (4, 2, 8)}, "1 <= min <= opt <= max"), ({"input_size": (4, 64)}, "at least 8x8"),
])
def test_bad_export_config_is_a_user_error(kwargs: dict, message: str) -> None:
    with pytest.raises(EdgesegError, match=message):
        ExportConfig(**{"input_size": (32, 32), **kwargs})


def test_parse_batch_profile() -> None:
    assert parse_batch_profile("1,4,8") == (1, 4, 8)
    assert parse_batch_profile(None) is None
    with pytest.raises(EdgesegError, match="min,opt,max"):
        parse_batch_profile("1x4")


def test_load_onnx_rejects_a_non_model(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(EdgesegError, match="notes.onnx"):
        load_onnx(bogus)
    with pytest.raises(EdgesegError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")


def test_fused_model_exports_plugin_nodes(dbmsnet: torch.nn.Module, tmp_path: Path) -> None:
    import copy

    from edgeseg.export import check_trt_compat, simplify_onnx
    from edgeseg.ops.fused_ddc_op import extension_available
    from edgeseg.ops.onnx_plugin import PLUGIN_DOMAIN, PLUGIN_NAME, custom_translation_table

    if not extension_available():
        pytest.skip("the compiled fused_ddc op (edgeseg._C) is not built here")
    fused = copy.deepcopy(dbmsnet).fuse()
    raw, sim = tmp_path / "model.onnx", tmp_path / "model.sim.onnx"
    export_onnx(fused, raw, ExportConfig(input_size=DBMS_SIZE), translation_table=custom_translation_table())
    # The plugin graph's outputs are compared before/after onnxsim through the op's CPU kernel.
    assert simplify_onnx(raw, sim).output_check == "passed"
    for path in (raw, sim):
        model = onnx.load(path)
        plugins = [n for n in model.graph.node if n.op_type == PLUGIN_NAME]
        assert len(plugins) == 3 and all(n.domain == PLUGIN_DOMAIN for n in plugins)  # S, M, L blocks
        assert check_trt_compat(path).plugins == [PLUGIN_NAME]


def test_external_data_write_failure_leaves_nothing_behind(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from onnx import TensorProto, helper, numpy_helper

    import edgeseg.export.onnx_export as onnx_export

    weights = numpy_helper.from_array(np.ones(4096, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096])], [weights])
    # Pretend the graph is over protobuf's 2 GiB limit, so the external-data path is taken.
    monkeypatch.setattr(onnx_export, "_PROTOBUF_LIMIT", 1024)
    real_replace = os.replace

    def full_disk(src: str, dst: str) -> None:
        if str(dst).endswith(".data"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(onnx_export.os, "replace", full_disk)
    with pytest.raises(EdgesegError, match=r"big\.onnx: could not write it \(No space left on device\)"):
        onnx_export.save_onnx(helper.make_model(graph), tmp_path / "big.onnx")
    assert list(tmp_path.iterdir()) == []
