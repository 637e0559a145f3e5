"""edgeseg: semantic-segmentation networks from PyTorch to validated TensorRT engines.

Importing the package is cheap: it pulls in neither TensorRT nor ONNX Runtime. Heavy backends are
imported lazily by the modules that use them.
"""

from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime import Segmenter, SegResult

__all__ = ["EdgesegError", "Segmenter", "SegResult", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `edgeseg.Segmenter` imports torch; resolve it on first use so `import edgeseg` stays light.
    if name in ("Segmenter", "SegResult"):
        from edgeseg import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
