"""Backends behind one interface: see :class:`edgeseg.runners.base.BaseRunner`.

Backend classes are resolved on first access, so ``from edgeseg.runners import OnnxrtRunner`` does
not pay for importing torch, and nothing here imports TensorRT until a TrtRunner is activated.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgeseg.runners.base import BaseRunner, TensorMeta

if TYPE_CHECKING:
    from edgeseg.runners.onnxrt import OnnxrtRunner
    from edgeseg.runners.torch import TorchRunner
    from edgeseg.runners.trt import TrtRunner

__all__ = ["BaseRunner", "TensorMeta", "TorchRunner", "OnnxrtRunner", "TrtRunner"]

_LAZY = {
    "TorchRunner": "edgeseg.runners.torch",
    "OnnxrtRunner": "edgeseg.runners.onnxrt",
    "TrtRunner": "edgeseg.runners.trt",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeseg.runners' has no attribute {name!r}")
