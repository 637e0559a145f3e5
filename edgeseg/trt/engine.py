"""Load a built engine after checking that it belongs to this TensorRT version and GPU."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg._io import sha256_bytes
from edgeseg.errors import EdgesegError
from edgeseg.trt._import import require_tensorrt
from edgeseg.trt.builder import load_plugin_libraries
from edgeseg.trt.metadata import (
    RuntimeInfo,
    ensure_compatible,
    metadata_path,
    read_metadata,
    recorded_dla_core,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["LoadedEngine", "load_engine"]


@dataclass
class LoadedEngine:
    """A deserialised engine with what must outlive it.

    Attributes:
        engine: the ``tensorrt.ICudaEngine``.
        runtime: the ``tensorrt.Runtime`` that deserialised it (kept alive with the engine).
        metadata: the engine's edgeseg metadata.
    """

    engine: trt.ICudaEngine
    runtime: trt.Runtime
    metadata: dict[str, Any]


def load_engine(
    engine_path: str | os.PathLike[str],
    *,
    check_metadata: bool = True,
    plugin_libs: Sequence[str | os.PathLike[str]] = (),
    device: int = 0,
) -> LoadedEngine:
    """Deserialise an engine built by :func:`edgeseg.trt.build_engine`.

    Args:
        engine_path: ``model.<precision>.engine``; its ``.json`` metadata must sit beside it.
        check_metadata: compare the metadata's TensorRT version and GPU with this system and the
            engine's sha256 with the file, refusing a mismatch with an explanation. Defaults to True.
        plugin_libs: plugin libraries the engine needs. Defaults to those recorded at build time.
        device: CUDA device. Defaults to 0. An engine whose metadata records a DLA core runs on that core.

    Raises:
        MissingDependencyError: TensorRT or cuda-python missing.
        EngineMismatchError: built for another TensorRT version or GPU.
        EdgesegError: file missing, metadata missing/corrupt, sha256 mismatch, or deserialisation failed.
    """
    trt_mod = require_tensorrt("running TensorRT engines")
    from edgeseg.trt._cuda import cuda_call, cudart

    path = Path(engine_path)
    if not path.is_file():
        raise EdgesegError(f"{path}: engine not found")
    plan = path.read_bytes()
    cuda_call(cudart().cudaSetDevice(device))
    if check_metadata:
        meta = read_metadata(path)
        ensure_compatible(meta, RuntimeInfo.current(device), path)
        if meta.get("engine_sha256") not in (None, sha256_bytes(plan)):
            raise EdgesegError(f"{path}: the engine does not match the sha256 in {metadata_path(path).name}; "
                               "it was replaced or truncated after the build")
    else:
        meta = read_metadata(path) if metadata_path(path).is_file() else {}

    logger = trt_mod.Logger(trt_mod.Logger.WARNING)
    runtime = trt_mod.Runtime(logger)
    dla_core = recorded_dla_core(meta)
    if dla_core is not None:
        # The runtime's DLA core is where the engine's DLA layers run; it must be set before
        # deserialising (as trtexec does).
        runtime.DLA_core = dla_core
    load_plugin_libraries(plugin_libs or meta.get("flags", {}).get("plugin_libs", []))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EdgesegError(f"{path}: TensorRT could not deserialize the engine (see its log above)")
    return LoadedEngine(engine, runtime, meta)
