"""FP16 (AutoCast): strongly typed graph, FP32 I/O, runs in ONNX Runtime and agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeseg.errors import EdgesegError
from edgeseg.export import check_trt_compat
from edgeseg.precision.fp16 import convert_fp16
from edgeseg.runners.onnxrt import OnnxrtRunner


def test_fp16_graph_is_typed_and_agrees(tiny_net: torch.nn.Module, tiny_sim: Path, images: np.ndarray,
                                        tmp_path: Path) -> None:
    out = tmp_path / "model.fp16.onnx"
    result = convert_fp16(tiny_sim, out, reference_inputs=images[:4])
    model = onnx.load(out)
    # I/O stay float32; the weights are float16.
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert result.fp32_nodes == []  # nothing in this net exceeds |x| > 512
    check_trt_compat(out)
    with OnnxrtRunner(out, graph_optimization="disabled") as runner:
        agree = []
        for x in images:
            logits = runner.infer({"images": x[None]})["logits"]
            assert logits.dtype == np.float32
            with torch.no_grad():
                ref = tiny_net(torch.from_numpy(x[None])).numpy()
            assert np.abs(logits - ref).max() < 0.05
            agree.append((logits.argmax(1) == ref.argmax(1)).mean())
    assert np.mean(agree) > 0.995


def test_fp16_keeps_large_magnitude_nodes_in_fp32(tiny_sim: Path, images: np.ndarray, tmp_path: Path) -> None:
    # With a tiny data_max every node's I/O is "too large" for FP16, so the rule keeps them FP32.
    result = convert_fp16(tiny_sim, tmp_path / "m.onnx", reference_inputs=images[:2], data_max=1e-3)
    assert any("conv" in name.lower() for name in result.fp32_nodes)


def test_fp16_rejects_a_non_model(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(EdgesegError, match="bad.onnx"):
        convert_fp16(tmp_path / "bad.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
