"""Quiet, lazily imported access to TensorRT Model Optimizer (``nvidia-modelopt``).

modelopt logs every pass at INFO level to stdout and Polygraphy prints its own progress; edgeseg
shows its own progress bars instead, so both are turned down to errors while a precision pass
runs.

modelopt decides whether TensorRT is present with a bare ``import tensorrt``, which the
``tensorrt-stubs`` type-stub package satisfies with an empty namespace package; modelopt then
calls ``trt.Logger`` and crashes. While a pass runs, its flag is set from edgeseg's own check
(:func:`edgeseg.trt.tensorrt_available`), which tells stubs from a real installation.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from edgeseg.errors import MissingDependencyError

__all__ = ["quiet_modelopt", "require_modelopt"]


def require_modelopt() -> None:
    """Raise :class:`MissingDependencyError` if ``modelopt.onnx`` cannot be imported."""
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError("nvidia-modelopt", purpose="FP16 / INT8 ONNX conversion") from None


@contextlib.contextmanager
def quiet_modelopt() -> Iterator[None]:
    """Turn modelopt's and Polygraphy's console output down to errors for the block."""
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
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        G_LOGGER.module_severity = severity
        trt_utils.TRT_PYTHON_AVAILABLE = trt_flag
