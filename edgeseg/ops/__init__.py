"""The fused DDC custom op (docs/design.md section 4): Python wrapper, reference, model fusion.

* :func:`fused_ddc` - ``torch.ops.edgeseg.fused_ddc`` with a typed signature (falls back to the
  reference, with one warning, when the compiled extension is missing);
* :func:`fused_ddc_reference` - the same math in plain PyTorch;
* :func:`fuse_model` / :class:`FusedDDC` (in :mod:`edgeseg.ops.fuse`) - swap a DBMSNet's DDC
  blocks for the op at inference time;
* :mod:`edgeseg.ops.onnx_plugin` - export fused models with one TensorRT plugin node per block;
* :mod:`edgeseg.ops.ort_custom_op` - run that plugin-form ONNX on the CPU in ONNX Runtime.
"""

from edgeseg.ops.fuse import FusedDDC, fuse_model
from edgeseg.ops.fused_ddc_op import extension_available, extension_error, fused_ddc, has_kernel
from edgeseg.ops.reference import fused_ddc_reference

__all__ = [
    "FusedDDC",
    "extension_available",
    "extension_error",
    "fuse_model",
    "fused_ddc",
    "fused_ddc_reference",
    "has_kernel",
]
