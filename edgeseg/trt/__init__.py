"""TensorRT: engine build, engine metadata, inspection and loading, on top of Polygraphy's loaders.

``import edgeseg.trt`` never imports TensorRT; the functions that need it import it on first use and
raise :class:`~edgeseg.errors.MissingDependencyError` (naming the ``trt`` extra) where it is missing.
The precision check (:mod:`edgeseg.trt.inspection`), the compatibility check
(:mod:`edgeseg.trt.metadata`) and the plugin-library policy (:mod:`edgeseg.trt.plugins`) are pure Python.
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
from edgeseg.trt.plugins import load_plugin_libraries, recorded_plugin_libraries

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
    "load_plugin_libraries",
    "metadata_path",
    "read_metadata",
    "recorded_plugin_libraries",
    "require_tensorrt",
    "resolve_profile",
    "tensorrt_available",
]
