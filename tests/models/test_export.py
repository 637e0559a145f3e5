"""A zoo model exports to a clean, TensorRT-compatible ONNX graph that matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgeseg.export.onnx_export import ExportConfig, export_onnx
from edgeseg.export.trt_compat import check_trt_compat
from edgeseg.models import build_model


def test_dbmsnet_exports_with_plain_pooling(tmp_path: Path) -> None:
    # 72×104 at OS16 gives a 5×7 De4: the PPM's 2, 3 and 6 bins do not divide it.
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=5, width=0.25).eval()
    path = tmp_path / "model.onnx"
    result = export_onnx(model, path, ExportConfig(input_size=(72, 104)))
    assert not any("Adaptive" in op or "GlobalAverage" in op for op in result.op_types), result.op_types
    assert result.op_types["Resize"] >= 1 and "ConvTranspose" not in result.op_types
    check_trt_compat(path)  # raises on any node TensorRT 10 would reject
    x = torch.randn(1, 3, 72, 104)
    with torch.no_grad():
        ref = model(x).numpy()
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"images": x.numpy()}
    )[0]
    assert out.shape == (1, 5, 72, 104)
    np.testing.assert_allclose(out, ref, atol=1e-3, rtol=1e-3)
