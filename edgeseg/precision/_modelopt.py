"""Quiet, lazily imported access to TensorRT Model Optimizer (``nvidia-modelopt``).

modelopt logs every pass at INFO level to stdout and Polygraphy prints its own progress; edgeseg
shows its own progress bars instead, so both are turned down to errors while a precision pass
runs.
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
    from modelopt.onnx.autocast.logging_config import configure_logging as configure_autocast
    from modelopt.onnx.logging_config import configure_logging
    from polygraphy.logger import G_LOGGER

    configure_logging(logging.ERROR)
    configure_autocast(logging.ERROR)
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR
    try:
        # Some passes print() progress directly; keep stdout for edgeseg's own JSON output.
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        G_LOGGER.module_severity = severity
