"""ONNX Runtime backend: runs every ONNX artifact of a build (raw, simplified, FP16, INT8 Q/DQ).

Plugin-form graphs (``--plugin fused-ddc``: ``EdgesegFusedDDC`` nodes for TensorRT's plugin) run too:
ONNX Runtime has no kernel for the node, so the session loads the graph's ONNX Runtime form with the
nodes bound to the fused op's CPU kernel (:mod:`edgeseg.ops.ort_custom_op`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta

__all__ = ["OnnxrtRunner", "GRAPH_OPTIMIZATIONS"]

#: ``graph_optimization`` values and the ``onnxruntime.GraphOptimizationLevel`` member each selects.
GRAPH_OPTIMIZATIONS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

# ONNX Runtime reports element types as strings; these are the ones a segmentation graph uses.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


class OnnxrtRunner(BaseRunner):
    """Run an ONNX model with ONNX Runtime.

    A model with ``EdgesegFusedDDC`` plugin nodes runs with those nodes on the fused op's CPU kernel
    (onnxruntime-extensions, FP32 only); every other model is handed to ONNX Runtime unchanged.

    Args:
        path_or_bytes: path of a ``.onnx`` file, or the serialized model.
        providers: execution providers in priority order. Defaults to CUDA (when this onnxruntime
            build has it) then CPU.
        graph_optimization: ``"all"``, ``"extended"``, ``"basic"`` or ``"disabled"``.
            Defaults to ``"all"``.
        qdq_fusion: let ONNX Runtime fuse Q/DQ pairs into its own integer kernels (QLinearConv and
            friends). Off (``session.disable_quant_qdq``), Q/DQ graphs run as float fake-quantization
            with every other optimization: how the guard and validation judge them (see
            :func:`edgeseg.runners.loader.ort_settings`). Defaults to True.
        intra_op_threads: threads for one operator. Defaults to ONNX Runtime's choice (all cores).
        session_config: extra ``SessionOptions.add_session_config_entry`` entries, e.g.
            ``{"session.intra_op.allow_spinning": "0"}`` when other threads share the cores.
            Defaults to none.
        memory_arena: keep ONNX Runtime's CPU memory arena (faster repeated runs; it holds on to
            the largest activations between runs). Defaults to True.
        name: label for reports. Defaults to ``"onnxrt:<file name>"``.
    """

    backend = "onnxrt"

    def __init__(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes,
        *,
        providers: list[str] | None = None,
        graph_optimization: str = "all",
        intra_op_threads: int | None = None,
        session_config: dict[str, str] | None = None,
        name: str | None = None,
        memory_arena: bool = True,
        qdq_fusion: bool = True,
    ) -> None:
        if graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise EdgesegError(f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATIONS)}, "
                               f"got {graph_optimization!r}")
        if isinstance(path_or_bytes, bytes):
            label = "<bytes>"
        else:
            path_or_bytes = Path(path_or_bytes)
            if not path_or_bytes.is_file():
                raise EdgesegError(f"{path_or_bytes}: ONNX file not found")
            label = path_or_bytes.name
        super().__init__(name or f"onnxrt:{label}")
        self.model = path_or_bytes
        self.providers = providers
        self.graph_optimization = graph_optimization
        self.intra_op_threads = intra_op_threads
        self.session_config = dict(session_config or {})
        if not qdq_fusion:
            self.session_config["session.disable_quant_qdq"] = "1"
        self.memory_arena = memory_arena
        self.session: Any = None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATIONS[self.graph_optimization])
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        options.enable_cpu_mem_arena = self.memory_arena
        providers = self.providers
        if providers is None:
            # Never pick the TensorRT EP implicitly: edgeseg builds its engines itself.
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        model = self.model if isinstance(self.model, bytes) else os.fspath(self.model)
        plugin_graph = self._plugin_graph(model)
        if plugin_graph is not None:
            from edgeseg.ops.ort_custom_op import register_custom_ops, to_onnxruntime_graph

            options.register_custom_ops_library(register_custom_ops())
            model = to_onnxruntime_graph(plugin_graph).SerializeToString()
        try:
            self.session = ort.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types for every load failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{self.name}: ONNX Runtime cannot load the model ({first})") from None

    def _plugin_graph(self, model: str | bytes) -> Any:
        """The model as an ``onnx.ModelProto`` when it has plugin nodes, else None (load it as it is).

        Raises:
            EdgesegError: a node of the plugin domain breaks the plugin's contract.
        """
        import onnx

        from edgeseg.ops.onnx_plugin import plugin_nodes

        try:
            # Without external data: deciding needs the nodes only, not the weights.
            proto = (onnx.load_from_string(model) if isinstance(model, bytes)
                     else onnx.load(model, load_external_data=False))
        except Exception:  # protobuf decode errors come in many types
            return None  # not an ONNX model: ONNX Runtime's own load reports it below
        try:
            if not plugin_nodes(proto):
                return None
        except EdgesegError as e:
            raise EdgesegError(f"{self.name}: {e}") from None
        if isinstance(model, str):
            onnx.load_external_data_for_model(proto, os.path.dirname(model))
        return proto

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return [_meta(i) for i in self.session.get_inputs()]

    def get_output_metadata(self) -> list[TensorMeta]:
        """Names, dtypes and shapes of the outputs, as the session reports them."""
        self._require_active()
        return [_meta(o) for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        try:
            host = {k: np.asarray(v) for k, v in feed.items()}
        except TypeError as e:  # e.g. a CUDA tensor: numpy cannot view device memory
            raise EdgesegError(f"{self.name}: inputs must be host arrays ({e})") from None
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, host), strict=True))

    def deactivate_impl(self) -> None:
        self.session = None


def _meta(node: Any) -> TensorMeta:
    """TensorMeta from an ``onnxruntime.NodeArg``; symbolic dims stay strings, unknown ones None."""
    if node.type not in _ORT_DTYPES:
        raise EdgesegError(f"tensor '{node.name}' has unsupported type {node.type}")
    return TensorMeta(node.name, np.dtype(_ORT_DTYPES[node.type]), tuple(node.shape))
