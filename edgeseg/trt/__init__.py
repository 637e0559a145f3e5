"""TensorRT: engine build, engine metadata, inspection and loading.

``import edgeseg.trt`` never imports TensorRT; the functions that need it import it on first use and
raise :class:`~edgeseg.errors.MissingDependencyError` (naming the ``trt`` extra) where it is missing.
The precision check (:mod:`edgeseg.trt.inspection`) and the compatibility check
(:mod:`edgeseg.trt.metadata`) are pure Python.
"""

from edgeseg.trt._import import require_tensorrt, tensorrt_available
from edgeseg.trt.builder import DEFAULT_WORKSPACE_GIB, build_engine, resolve_profile
from edgeseg.trt.engine import LoadedEngine, load_engine
from edgeseg.trt.inspection import PRECISIONS, PrecisionCheck, check_precision_realized, layer_dtype_counts
from edgeseg.trt.metadata import (
    METADATA_FORMAT,
    EngineMismatchError,
    RuntimeInfo,
    compatibility_problems,
    ensure_compatible,
    metadata_path,
    read_metadata,
)

__all__ = [
    "DEFAULT_WORKSPACE_GIB",
    "METADATA_FORMAT",
    "PRECISIONS",
    "EngineMismatchError",
    "LoadedEngine",
    "PrecisionCheck",
    "RuntimeInfo",
    "build_engine",
    "check_precision_realized",
    "compatibility_problems",
    "ensure_compatible",
    "layer_dtype_counts",
    "load_engine",
    "metadata_path",
    "read_metadata",
    "require_tensorrt",
    "resolve_profile",
    "tensorrt_available",
]
