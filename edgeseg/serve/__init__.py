"""Serving exports: a Triton Inference Server model repository and a DeepStream nvinfer config.

Both start from a build directory (``engines/<name>``) and copy or derive its artifacts; neither
ever fabricates a TensorRT engine.
"""

from edgeseg.serve.deepstream import DeepStreamExport, export_deepstream
from edgeseg.serve.triton import TritonExport, export_triton

__all__ = ["export_triton", "TritonExport", "export_deepstream", "DeepStreamExport"]
