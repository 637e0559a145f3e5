"""ONNX export, simplification and the TensorRT-compatibility check (the first build stages).

Typical use::

    from edgeseg.export import ExportConfig, export_onnx, simplify_onnx, check_trt_compat

    export_onnx(model, "model.onnx", ExportConfig(input_size=(512, 512)))
    simplify_onnx("model.onnx", "model.sim.onnx")
    check_trt_compat("model.sim.onnx")
"""

from edgeseg.export.onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    MAX_OPSET,
    MIN_OPSET,
    ExportConfig,
    ExportResult,
    export_onnx,
    load_onnx,
    op_histogram,
    parse_batch_profile,
)
from edgeseg.export.simplify import SimplifyResult, simplify_onnx
from edgeseg.export.trt_compat import CompatIssue, CompatReport, check_trt_compat, find_trt_issues

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportConfig",
    "ExportResult",
    "export_onnx",
    "load_onnx",
    "op_histogram",
    "parse_batch_profile",
    "SimplifyResult",
    "simplify_onnx",
    "CompatIssue",
    "CompatReport",
    "check_trt_compat",
    "find_trt_issues",
]
