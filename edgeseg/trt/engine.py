"""Load a built engine after checking that it belongs to this TensorRT version and GPU.

Deserialisation is Polygraphy's ``EngineFromBytes``; edgeseg adds what Polygraphy does not know about:
the metadata check, the plugin-library policy (:mod:`edgeseg.trt.plugins`) and the DLA core an engine
was built for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from polygraphy.backend.trt import engine_from_bytes
from polygraphy.backend.trt.util import get_trt_logger
from polygraphy.exception import PolygraphyException

from edgeseg._io import sha256_bytes
from edgeseg.errors import EdgesegError
from edgeseg.stopping import shielded
from edgeseg.trt._import import require_tensorrt
from edgeseg.trt.metadata import (
    RuntimeInfo,
    ensure_compatible,
    metadata_path,
    read_metadata,
    recorded_dla_core,
)
from edgeseg.trt.plugins import load_plugin_libraries, recorded_plugin_libraries

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["LoadedEngine", "load_engine", "new_runtime", "run_polygraphy"]

T = TypeVar("T")


@dataclass
class LoadedEngine:
    """A deserialised engine with what must outlive it.

    Attributes:
        engine: the ``tensorrt.ICudaEngine``.
        runtime: the ``tensorrt.Runtime`` that deserialised it (kept alive with the engine).
        metadata: the engine's edgeseg metadata.
        plugin_libs: resolved paths of the plugin libraries loaded for it.
    """

    engine: trt.ICudaEngine
    runtime: trt.Runtime
    metadata: dict[str, Any]
    plugin_libs: list[str] = field(default_factory=list)


def run_polygraphy(what: str, step: Callable[[], T]) -> T:
    """Run one Polygraphy step, turning its exception (a ``G_LOGGER.critical``) into one line.

    Args:
        what: the subject, e.g. ``"model.int8.onnx: TensorRT's ONNX parser failed"``.
        step: the loader call.

    Raises:
        EdgesegError: ``what`` and the first line of Polygraphy's message (details are in its log).
    """
    try:
        # TensorRT calls Polygraphy's Python logger from C++: a Ctrl-C waits for the step's end.
        with shielded():
            return step()
    except PolygraphyException as e:
        reason = (str(e).strip().splitlines() or ["no details"])[0]
        raise EdgesegError(f"{what}: {reason} (see the TensorRT log above)") from None


def new_runtime(dla_core: int | None) -> trt.Runtime:
    """A ``tensorrt.Runtime`` on Polygraphy's logger, set to the engine's DLA core if it has one."""
    import tensorrt as trt

    runtime = trt.Runtime(get_trt_logger())
    if dla_core is not None:
        # Where the engine's DLA layers run; it must be set before deserialising (as trtexec does).
        runtime.DLA_core = dla_core
    return runtime


def load_engine(
    engine_path: str | os.PathLike[str],
    *,
    check_metadata: bool = True,
    plugin_libs: Sequence[str | os.PathLike[str]] = (),
) -> LoadedEngine:
    """Deserialise an engine built by :func:`edgeseg.trt.build_engine` on the current CUDA device.

    Args:
        engine_path: ``model.<precision>.engine``; its ``.json`` metadata must sit beside it.
        check_metadata: compare the metadata's TensorRT version and GPU with this system and the
            engine's sha256 with the file, refusing a mismatch with an explanation. Defaults to True.
        plugin_libs: plugin libraries to load, by any path (``--plugin-lib``). Defaults to those the
            metadata records, which must be files in the engine's folder with the recorded sha256.

    Raises:
        MissingDependencyError: TensorRT or cuda-python missing.
        EngineMismatchError: built for another TensorRT version or GPU.
        EdgesegError: file missing, metadata missing/corrupt, sha256 mismatch, a recorded plugin library
            outside the engine's folder, or deserialisation failed.
    """
    require_tensorrt("running TensorRT engines")
    path = Path(engine_path)
    if not path.is_file():
        raise EdgesegError(f"{path}: engine not found")
    plan = path.read_bytes()
    if check_metadata:
        meta = read_metadata(path)
        ensure_compatible(meta, RuntimeInfo.current(), path)
        if meta.get("engine_sha256") not in (None, sha256_bytes(plan)):
            raise EdgesegError(f"{path}: the engine does not match the sha256 in {metadata_path(path).name}; "
                               "it was replaced or truncated after the build")
    else:
        meta = read_metadata(path) if metadata_path(path).is_file() else {}
    plugins = load_plugin_libraries(plugin_libs or recorded_plugin_libraries(meta, path))
    runtime = new_runtime(recorded_dla_core(meta))
    engine = run_polygraphy(f"{path}: TensorRT could not deserialize the engine",
                            lambda: engine_from_bytes(plan, runtime=runtime))
    return LoadedEngine(engine, runtime, meta, plugins)
