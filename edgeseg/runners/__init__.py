"""Backends behind one interface: see :class:`edgeseg.runners.base.BaseRunner`.

Each backend module imports its framework (torch, onnxruntime, tensorrt) on first use, so
``from edgeseg.runners import OnnxrtRunner`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgeseg.runners.base import BaseRunner, TensorMeta

if TYPE_CHECKING:
    from edgeseg.runners.onnxrt import OnnxrtRunner
    from edgeseg.runners.torch import TorchRunner

__all__ = ["BaseRunner", "TensorMeta", "TorchRunner", "OnnxrtRunner"]

_LAZY = {"TorchRunner": "edgeseg.runners.torch", "OnnxrtRunner": "edgeseg.runners.onnxrt"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeseg.runners' has no attribute {name!r}")
