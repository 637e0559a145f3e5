"""edgeseg: semantic-segmentation networks from PyTorch to validated TensorRT engines.

Importing the package is cheap: it pulls in neither TensorRT nor ONNX Runtime. Heavy backends are
imported lazily by the modules that use them.
"""

from edgeseg.errors import EdgesegError

__all__ = ["EdgesegError", "__version__"]
__version__ = "0.1.0"
