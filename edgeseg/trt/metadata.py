"""Engine metadata (``model.<precision>.engine.json``) and the check that an engine fits this runtime.

TensorRT engines are tied to the TensorRT version and the GPU model they were built with.
Deserialising one elsewhere either fails deep inside TensorRT or, worse, half-works; so every engine
edgeseg builds carries a JSON sidecar, and loading compares it with the running system first and
explains any mismatch in plain words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg._io import read_json
from edgeseg.errors import EdgesegError

__all__ = [
    "METADATA_FORMAT",
    "RuntimeInfo",
    "EngineMismatchError",
    "metadata_path",
    "read_metadata",
    "compatibility_problems",
    "ensure_compatible",
    "recorded_dla_core",
]

METADATA_FORMAT = "edgeseg.engine/1"
_REQUIRED = ("format", "precision", "tensorrt_version", "gpu")


class EngineMismatchError(EdgesegError):
    """An engine was built for another TensorRT version or GPU than the one running."""


@dataclass(frozen=True)
class RuntimeInfo:
    """The system an engine is about to run on.

    Args:
        tensorrt_version: ``tensorrt.__version__``, e.g. ``"10.3.0.30"``.
        gpu_name: CUDA device name, e.g. ``"Orin"`` or ``"NVIDIA GeForce RTX 4090"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.7"``.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @classmethod
    def current(cls, device: int = 0) -> RuntimeInfo:
        """Describe this machine (needs TensorRT and cuda-python)."""
        from edgeseg.trt._cuda import gpu_info
        from edgeseg.trt._import import require_tensorrt

        trt = require_tensorrt()
        gpu = gpu_info(device)
        return cls(str(trt.__version__), gpu.name, gpu.compute_capability)


def metadata_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.int8.engine`` → ``model.int8.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_metadata(engine_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and sanity-check the sidecar of an engine.

    Raises:
        EdgesegError: the sidecar is missing, not JSON, or lacks required fields.
    """
    path = metadata_path(engine_path)
    if not path.is_file():
        raise EdgesegError(f"{path}: engine metadata not found; edgeseg cannot tell which TensorRT "
                           "version and GPU the engine was built for (rebuild it with edgeseg build)")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise EdgesegError(f"{path}: not edgeseg engine metadata (expected format {METADATA_FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise EdgesegError(f"{path}: engine metadata lacks {missing}")
    return meta


def recorded_dla_core(meta: dict[str, Any]) -> int | None:
    """The DLA core an engine was built for (``meta["device"]``), or None for a GPU engine."""
    device = meta.get("device") or {}
    core = device.get("dla_core") if device.get("type") == "dla" else None
    return None if core is None else int(core)


def _release(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` → ``(10, 3, 0)``: the build number does not change the plan format."""
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def compatibility_problems(meta: dict[str, Any], runtime: RuntimeInfo) -> list[str]:
    """Reasons why an engine described by ``meta`` cannot run on ``runtime`` (empty when it can).

    Pure function: compares the recorded TensorRT release (major.minor.patch), GPU compute
    capability and GPU name with the running system.
    """
    problems = []
    built = str(meta.get("tensorrt_version", "?"))
    if _release(built) != _release(runtime.tensorrt_version):
        problems.append(f"it was built with TensorRT {built} but this system has TensorRT "
                        f"{runtime.tensorrt_version} (engines are not portable across TensorRT versions)")
    gpu = meta.get("gpu") or {}
    cc = str(gpu.get("compute_capability", "?"))
    if cc != runtime.compute_capability:
        problems.append(f"it was built for compute capability {cc} ({gpu.get('name', '?')}) but this GPU "
                        f"is {runtime.gpu_name} with compute capability {runtime.compute_capability}")
    elif gpu.get("name") != runtime.gpu_name:
        # Same architecture, other model: TensorRT may load it but tactics were timed on another
        # GPU's SM count and clocks, so numbers from it would not describe this device.
        problems.append(f"it was built on a {gpu.get('name', '?')} but this GPU is a {runtime.gpu_name} "
                        "(engines are tuned for one GPU model)")
    return problems


def ensure_compatible(meta: dict[str, Any], runtime: RuntimeInfo,
                      engine_path: str | os.PathLike[str]) -> None:
    """Raise :class:`EngineMismatchError` explaining every mismatch and how to rebuild.

    Args:
        meta: the engine's metadata (:func:`read_metadata`).
        runtime: the system it is about to run on (:meth:`RuntimeInfo.current`).
        engine_path: the engine file, for the message.
    """
    problems = compatibility_problems(meta, runtime)
    if problems:
        build_dir = Path(engine_path).parent
        raise EngineMismatchError(
            f"{engine_path} cannot run here: " + "; ".join(problems)
            + f". Rebuild the engine on this machine: edgeseg build --from-onnx {build_dir}")
