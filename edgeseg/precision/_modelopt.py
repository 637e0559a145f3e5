"""Quiet, lazily imported access to TensorRT Model Optimizer (``nvidia-modelopt``).

modelopt logs every pass at INFO level to stdout and Polygraphy prints its own progress; edgeseg
shows its own progress bars instead, so both are turned down to errors while a precision pass
runs.

modelopt decides whether TensorRT is present with a bare ``import tensorrt``, which the
``tensorrt-stubs`` type-stub package satisfies with an empty namespace package; modelopt then
calls ``trt.Logger`` and crashes. While a pass runs, its flag is set from edgeseg's own check
(:func:`edgeseg.trt.tensorrt_available`), which tells stubs from a real installation.

modelopt's ``graph_utils.has_path_type`` appends the nodes it walks to its mutable default argument
``path_nodes=[]``, which lives as long as the module. Those onnx-graphsurgeon nodes reach the
graph's constants, whose lazy values point into the loaded ``ModelProto``, and protobuf keeps a
whole message alive for any sub-message still referenced: every ``quantize`` call kept one copy of
the model (~0.55 GB for FCN-8s). The list is emptied when a pass ends (:func:`release_modelopt_state`).

modelopt's FP16 pass ends by removing nodes whose outputs nothing reads
(``PrecisionConverter._cleanup_no_consumer_nodes``), finding each output's readers by scanning every
node: quadratic in the graph's size, 0.45 s of the 2.2 s an INT8 ``quantize`` call of the demo model
takes, and the accuracy guard makes several calls. While a pass runs it is replaced by
:func:`_remove_unread_nodes`, which removes the same nodes after indexing the readers once.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

from edgeseg.errors import MissingDependencyError
from edgeseg.stopping import shielded

__all__ = ["quiet_modelopt", "release_modelopt_state", "require_modelopt"]


def require_modelopt() -> None:
    """Raise :class:`MissingDependencyError` if ``modelopt.onnx`` cannot be imported."""
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError("nvidia-modelopt", purpose="FP16 / INT8 ONNX conversion") from None


def _remove_unread_nodes(converter: Any) -> None:
    """``PrecisionConverter._cleanup_no_consumer_nodes``, with the tensors read indexed once.

    A node goes when none of its outputs is a graph output or an input of any node, as in modelopt
    (an empty output name counts as read when some node has an empty optional input, as there).
    """
    graph = converter.model.graph
    outputs = {o.name for o in graph.output}
    read = {name for node in graph.node for name in node.input}
    for node in [n for n in graph.node if not any(o in outputs or o in read for o in n.output)]:
        graph.node.remove(node)


@contextlib.contextmanager
def _indexed_cleanup() -> Iterator[None]:
    """Swap :func:`_remove_unread_nodes` in for modelopt's quadratic cleanup while the block runs."""
    from modelopt.onnx.autocast import precisionconverter

    cls = precisionconverter.PrecisionConverter
    original = cls.__dict__.get("_cleanup_no_consumer_nodes")
    if original is None:  # another modelopt: leave it as it is
        yield
        return
    cls._cleanup_no_consumer_nodes = _remove_unread_nodes  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls._cleanup_no_consumer_nodes = original  # type: ignore[method-assign]


def release_modelopt_state() -> None:
    """Drop the graph nodes modelopt's ``has_path_type`` accumulates in its default argument."""
    from modelopt.onnx.quantization import graph_utils

    for default in graph_utils.has_path_type.__defaults__ or ():
        if isinstance(default, list):
            default.clear()


@contextlib.contextmanager
def quiet_modelopt() -> Iterator[None]:
    """Turn modelopt's and Polygraphy's console output down to errors for the block.

    On exit, also releases what modelopt keeps between calls (:func:`release_modelopt_state`).
    The block is :func:`~edgeseg.stopping.shielded`: Ctrl-C waits for modelopt's call to end rather
    than land in Python that native code called (TensorRT's logger, where TensorRT is installed).
    """
    require_modelopt()
    import modelopt.onnx.trt_utils as trt_utils
    from modelopt.onnx.autocast.logging_config import configure_logging as configure_autocast
    from modelopt.onnx.logging_config import configure_logging
    from polygraphy.logger import G_LOGGER

    from edgeseg.trt import tensorrt_available

    configure_logging(logging.ERROR)
    configure_autocast(logging.ERROR)
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR
    trt_flag = trt_utils.TRT_PYTHON_AVAILABLE
    trt_utils.TRT_PYTHON_AVAILABLE = trt_flag and tensorrt_available()[0]
    try:
        # Some passes print() progress directly; keep stdout for edgeseg's own JSON output.
        with contextlib.redirect_stdout(io.StringIO()), _indexed_cleanup(), shielded():
            yield
    finally:
        G_LOGGER.module_severity = severity
        trt_utils.TRT_PYTHON_AVAILABLE = trt_flag
        release_modelopt_state()
