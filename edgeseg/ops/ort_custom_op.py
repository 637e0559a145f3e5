"""Run plugin-form ONNX (``EdgesegFusedDDC`` nodes) on the CPU with ONNX Runtime.

ONNX Runtime has no kernel for the TensorRT plugin node, so the graph could otherwise only be checked
on a GPU with TensorRT. Here the node is bound to the op's CPU kernel through an
onnxruntime-extensions Python custom op: :func:`ort_session` returns an ``InferenceSession`` whose
plugin nodes call :func:`~edgeseg.ops.fused_ddc` (FP32), so the plugin graph can be compared with
the standard-op graph, or with PyTorch, before it ever reaches TensorRT.

onnxruntime-extensions serves Python custom ops from its own domain (``ai.onnx.contrib``) with scalar
attributes only, so the session runs a rewritten copy: plugin nodes move to that domain and their
``dilations`` become a comma-separated string. The file on disk is never changed.

Tools that run ONNX Runtime themselves (onnxsim's equality check, calibration) can use the same pair of
rewrites: ``to_onnxruntime_graph`` → tool with ``register_custom_ops()`` as its custom-op library →
``from_onnxruntime_graph`` restores the plugin nodes exactly as TensorRT's parser expects them.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.ops.onnx_plugin import (
    PLUGIN_DOMAIN,
    PLUGIN_DOMAIN_VERSION,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    plugin_nodes,
)

__all__ = ["from_onnxruntime_graph", "ort_session", "register_custom_ops", "to_onnxruntime_graph"]

# Python custom ops have a fixed input count, hence one op type per arity.
_ORT_OP_TYPES = {6: PLUGIN_NAME, 5: f"{PLUGIN_NAME}NoResidual"}


@functools.cache
def register_custom_ops() -> str:
    """Register the plugin node's Python custom ops (once per process) with onnxruntime-extensions.

    Returns:
        Path of the onnxruntime-extensions library: pass it to
        ``SessionOptions.register_custom_ops_library`` (or onnxsim's ``custom_lib``) so a session in
        this process runs the nodes of :func:`to_onnxruntime_graph` on the fused op's CPU kernel.

    Raises:
        MissingDependencyError: onnxruntime-extensions is not installed.
    """
    try:
        from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    except ImportError:
        raise MissingDependencyError(
            "onnxruntime_extensions", purpose="running plugin-form ONNX on the CPU"
        ) from None

    import numpy as np
    import torch

    from edgeseg.ops.fused_ddc_op import fused_ddc

    def run(*arrays: np.ndarray, dilations: str) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        d = [int(v) for v in dilations.split(",")]
        x, weight, scale, shift, pooled, *residual = tensors
        with torch.inference_mode():
            y = fused_ddc(x, weight, d, scale, shift, pooled, residual[0] if residual else None)
        return y.numpy()

    for arity, op_type in _ORT_OP_TYPES.items():
        onnx_op(
            op_type=op_type,
            inputs=[PyCustomOpDef.dt_float] * arity,
            outputs=[PyCustomOpDef.dt_float],
            attrs={"dilations": PyCustomOpDef.dt_string},
        )(run)
    return get_library_path()


def to_onnxruntime_graph(model: Any) -> Any:
    """A copy of ``model`` whose plugin nodes are onnxruntime-extensions custom ops.

    Args:
        model: an ``onnx.ModelProto`` with ``EdgesegFusedDDC`` nodes (checked by
            :func:`~edgeseg.ops.onnx_plugin.plugin_nodes`).

    Returns:
        The rewritten ``onnx.ModelProto``.
    """
    import onnx
    from onnxruntime_extensions import default_opset_domain

    out = onnx.ModelProto()
    out.CopyFrom(model)
    domain = default_opset_domain()
    for node in plugin_nodes(out):
        dilations = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "dilations")
        node.domain = domain
        node.op_type = _ORT_OP_TYPES[len(node.input)]
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("dilations", ",".join(str(d) for d in dilations)))
    imports = [o for o in out.opset_import if o.domain != PLUGIN_DOMAIN]
    if not any(o.domain == domain for o in imports):
        imports.append(onnx.helper.make_opsetid(domain, 1))
    del out.opset_import[:]
    out.opset_import.extend(imports)
    return out


def from_onnxruntime_graph(model: Any) -> Any:
    """Undo :func:`to_onnxruntime_graph`: a copy with the custom ops back as ``EdgesegFusedDDC`` nodes.

    Args:
        model: an ``onnx.ModelProto`` produced by :func:`to_onnxruntime_graph` (possibly transformed
            since, e.g. simplified).

    Returns:
        The plugin-form ``onnx.ModelProto`` (checked by :func:`~edgeseg.ops.onnx_plugin.plugin_nodes`).
    """
    import onnx
    from onnxruntime_extensions import default_opset_domain

    out = onnx.ModelProto()
    out.CopyFrom(model)
    domain = default_opset_domain()
    ort_types = set(_ORT_OP_TYPES.values())
    for node in out.graph.node:
        if node.domain != domain or node.op_type not in ort_types:
            continue
        text = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "dilations")
        node.domain = PLUGIN_DOMAIN
        node.op_type = PLUGIN_NAME
        del node.attribute[:]
        node.attribute.extend([
            onnx.helper.make_attribute("dilations", [int(d) for d in text.decode().split(",")]),
            onnx.helper.make_attribute("plugin_version", PLUGIN_VERSION),
            onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
        ])  # fmt: skip
    still_used = any(n.domain == domain for n in out.graph.node)
    imports = [
        o for o in out.opset_import if o.domain != PLUGIN_DOMAIN and (still_used or o.domain != domain)
    ]
    del out.opset_import[:]
    out.opset_import.extend(imports)
    out.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, PLUGIN_DOMAIN_VERSION))
    plugin_nodes(out)
    return out


def ort_session(model: Any, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a plugin-form ONNX model.

    Args:
        model: path of an ONNX file or an ``onnx.ModelProto``.
        threads: intra-op threads. Defaults to ONNX Runtime's choice.

    Returns:
        An ``onnxruntime.InferenceSession`` (CPU execution provider) with the plugin nodes bound to
        the fused op's CPU kernel; graphs without plugin nodes run unchanged.

    Raises:
        EdgesegError: the file is not an ONNX model or a plugin node breaks the plugin's contract.
        MissingDependencyError: onnxruntime-extensions is not installed.
    """
    import onnx
    import onnxruntime as ort

    if isinstance(model, (str, os.PathLike)):
        try:
            model = onnx.load(os.fspath(model))
        except Exception as e:  # protobuf decode errors come in many types
            raise EdgesegError(f"{model}: not a readable ONNX model ({type(e).__name__})") from None
    library = register_custom_ops()
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    if threads is not None:
        options.intra_op_num_threads = threads
    graph = to_onnxruntime_graph(model)
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
