"""Whether TensorRT can be used here, and the one place that imports it for edgeseg."""

from __future__ import annotations

from types import ModuleType

from edgeseg.errors import MissingDependencyError

__all__ = ["tensorrt_available", "require_tensorrt", "MIN_TENSORRT_MAJOR"]

#: Name-based I/O (``num_io_tensors``, ``execute_async_v3``) and strongly typed networks need 10.x.
MIN_TENSORRT_MAJOR = 10


def tensorrt_available() -> tuple[bool, str]:
    """Whether a usable TensorRT Python package is importable.

    Returns:
        ``(True, "TensorRT <version>")`` or ``(False, <one-line reason>)``.
    """
    try:
        import tensorrt
    except (ImportError, OSError) as e:  # OSError: the wheel is there but libnvinfer is not
        return False, f"the 'tensorrt' package cannot be imported ({e})"
    version = getattr(tensorrt, "__version__", None)
    # Type stubs (tensorrt-stubs) install a 'tensorrt' folder holding only .pyi files, which
    # imports as an empty namespace package: importable, but no TensorRT in it.
    if version is None or not hasattr(tensorrt, "Builder"):
        return False, "the 'tensorrt' module found is not a TensorRT installation (type stubs only?)"
    major = int(str(version).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        return False, f"TensorRT {version} is too old; edgeseg needs TensorRT >= {MIN_TENSORRT_MAJOR}"
    return True, f"TensorRT {version}"


def require_tensorrt(purpose: str = "building and running TensorRT engines") -> ModuleType:
    """Import TensorRT or raise the one-line install hint.

    Raises:
        MissingDependencyError: TensorRT is not importable (or too old); names the ``trt`` extra.
    """
    ok, reason = tensorrt_available()
    if not ok:
        err = MissingDependencyError("tensorrt", extra="trt", purpose=purpose)
        err.args = (f"{err.args[0]} [{reason}]",)
        raise err
    import tensorrt

    return tensorrt
