"""TorchRunner and OnnxrtRunner: agreement with each other, input checks, session options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.runners import OnnxrtRunner, TorchRunner


def _images(n: int = 2, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


def test_torch_and_onnxrt_agree(tiny_model: nn.Module, tiny_onnx: Path) -> None:
    x = _images()
    with TorchRunner(tiny_model) as ref, OnnxrtRunner(tiny_onnx, graph_optimization="disabled") as ort:
        a, b = ref.infer({"images": x})["logits"], ort.infer({"images": x})["logits"]
        assert ref.last_inference_time() is not None and ref.last_inference_time() > 0
    assert a.shape == b.shape == (2, 3, 16, 16) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_torch_runner_accepts_tensors_and_returns_numpy(tiny_model: nn.Module) -> None:
    x = _images(1)
    with TorchRunner(tiny_model, channels_last=True, name="ref") as r:
        from_numpy = r.infer({"images": x})["logits"]
        from_tensor = r.infer({"images": torch.from_numpy(x)})["logits"]
    assert isinstance(from_tensor, np.ndarray)
    np.testing.assert_allclose(from_numpy, from_tensor, atol=1e-6)


def test_onnxrt_metadata_reports_dynamic_batch(tiny_onnx: Path) -> None:
    with OnnxrtRunner(tiny_onnx) as r:
        (meta,) = r.get_input_metadata()
        (out,) = r.get_output_metadata()
    assert meta.name == "images" and meta.dtype == np.float32
    assert isinstance(meta.shape[0], str) and meta.shape[1:] == (3, 16, 16)
    assert out.name == "logits"


def test_onnxrt_from_bytes(tiny_onnx: Path) -> None:
    x = _images(3)
    with OnnxrtRunner(tiny_onnx.read_bytes()) as r:
        assert r.name == "onnxrt:<bytes>"
        assert r.infer({"images": x})["logits"].shape == (3, 3, 16, 16)


@pytest.mark.parametrize(("option", "level"), [("disabled", "ORT_DISABLE_ALL"), ("basic", "ORT_ENABLE_BASIC"),
                                               ("all", "ORT_ENABLE_ALL")])
def test_graph_optimization_option_reaches_the_session(tiny_onnx: Path, option: str, level: str) -> None:
    import onnxruntime as ort

    with OnnxrtRunner(tiny_onnx, graph_optimization=option, intra_op_threads=1) as r:
        opts = r.session.get_session_options()
    assert opts.graph_optimization_level == getattr(ort.GraphOptimizationLevel, level)
    assert opts.intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("feed", "match"),
    [
        ({"images": _images()[:, :2]}, "shape"),                      # 2 channels instead of 3
        ({"images": _images()[0]}, "rank"),                          # missing batch dim
        ({"images": _images().astype(np.float64)}, "float32"),       # wrong dtype
        ({"images": torch.zeros(1, 3, 16, 16, dtype=torch.int64)}, "float32"),  # wrong tensor dtype
        ({"input": _images()}, "inputs expected"),                   # wrong name
        ({"images": [[1.0]]}, "must be an array"),                    # not an array
    ],
)
def test_bad_inputs_raise(tiny_model: nn.Module, tiny_onnx: Path, feed: dict, match: str) -> None:
    for runner in (TorchRunner(tiny_model), OnnxrtRunner(tiny_onnx)):
        with runner, pytest.raises(EdgesegError, match=match):
            runner.infer(feed)


def test_lifecycle_and_construction_errors(tiny_onnx: Path, tmp_path: Path) -> None:
    r = OnnxrtRunner(tiny_onnx)
    with pytest.raises(EdgesegError, match="not active"):
        r.infer({"images": _images()})
    with pytest.raises(EdgesegError, match="graph_optimization"):
        OnnxrtRunner(tiny_onnx, graph_optimization="max")
    with pytest.raises(EdgesegError, match="not found"):
        OnnxrtRunner(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(EdgesegError, match="cannot load"), OnnxrtRunner(broken):
        pass
    with pytest.raises(EdgesegError, match="floating-point"):
        TorchRunner(nn.Identity(), dtype=torch.int32)
