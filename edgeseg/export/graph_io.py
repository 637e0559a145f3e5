"""Inputs and outputs of an ONNX graph, read without loading its weights (for serving configs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["OnnxTensor", "onnx_io"]


@dataclass(frozen=True)
class OnnxTensor:
    """One graph input/output: name, ONNX element type name (``FLOAT``, ``INT32``...), dims.

    A dim is an int, or a string for a symbolic (dynamic) dimension.
    """

    name: str
    elem_type: str
    dims: tuple[int | str, ...]


def onnx_io(path: str | os.PathLike[str]) -> tuple[list[OnnxTensor], list[OnnxTensor]]:
    """Inputs and outputs of an ONNX file, read without loading external weight data.

    Raises:
        EdgesegError: the file is missing or not an ONNX model.
    """
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: ONNX file not found") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise EdgesegError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}

    def describe(values: Any) -> list[OnnxTensor]:
        out = []
        for v in values:
            if v.name in initializers:
                continue  # old exporters list weights as inputs too
            t = v.type.tensor_type
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
            )
            out.append(OnnxTensor(v.name, onnx.TensorProto.DataType.Name(t.elem_type), dims))
        return out

    return describe(model.graph.input), describe(model.graph.output)
