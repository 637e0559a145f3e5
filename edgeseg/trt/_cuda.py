"""The GPU an engine is tied to, read through NVIDIA's ``cuda-python`` bindings.

Polygraphy owns every other CUDA call (streams, buffers, copies); it has no query for the device name
and compute capability that the engine metadata records. Needs a CUDA GPU, so it runs only where one
exists (see ``docs/gpu-validation.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = ["GpuInfo", "gpu_info"]


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6 layout
        except ImportError:
            raise MissingDependencyError("cuda-python", extra="trt", purpose="reading the GPU's name and "
                                         "compute capability for the engine metadata") from None
    return runtime


@dataclass(frozen=True)
class GpuInfo:
    """What an engine is tied to: the GPU model and its compute capability (``"8.7"``)."""

    name: str
    compute_capability: str


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``.

    Raises:
        MissingDependencyError: cuda-python is not installed.
        EdgesegError: the CUDA runtime reports an error (no GPU, bad device index).
    """
    err, prop = _cudart().cudaGetDeviceProperties(device)
    if int(err) != 0:  # cudaSuccess
        raise EdgesegError(f"CUDA device {device}: cudaGetDeviceProperties failed with error {int(err)}")
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}")
