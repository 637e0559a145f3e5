"""Read-only index over an ONNX graph, shared by the compatibility check and calibration."""

from __future__ import annotations

from typing import Any

__all__ = ["GraphIndex"]


class GraphIndex:
    """Lookup tables over one ``onnx.ModelProto``'s graph: producers, constants, element types.

    Args:
        model: the model (shape-inferred for complete type information).
    """

    def __init__(self, model: Any) -> None:
        import onnx

        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.elem_type: dict[str, int] = {t.name: t.data_type for t in graph.initializer}
        for vi in [*graph.value_info, *graph.input, *graph.output]:
            if vi.type.HasField("tensor_type"):
                self.elem_type.setdefault(vi.name, vi.type.tensor_type.elem_type)
        self._const_cache: dict[str, bool] = {}
        self._onnx = onnx

    def is_constant(self, name: str) -> bool:
        """True if ``name`` is computed from initializers / Constant nodes only (no graph input)."""
        if not name:
            return True
        if name in self._const_cache:
            return self._const_cache[name]
        self._const_cache[name] = False  # guards against cycles in malformed graphs
        if name in self.initializers:
            result = True
        else:
            node = self.producer.get(name)
            result = node is not None and (node.op_type == "Constant" or (
                len(node.input) > 0 and all(self.is_constant(i) for i in node.input)))
        self._const_cache[name] = result
        return result

    def constant_value(self, name: str) -> Any:
        """Numpy value of an initializer or Constant output, or None if not directly available."""
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def type_name(self, name: str) -> str | None:
        code = self.elem_type.get(name)
        if code is None:
            node = self.producer.get(name)
            if node is not None and node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        code = attr.t.data_type
        return self._onnx.TensorProto.DataType.Name(code) if code else None
