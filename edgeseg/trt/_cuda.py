"""The few CUDA runtime calls TensorRT needs, through NVIDIA's ``cuda-python`` bindings.

Everything here needs a CUDA GPU and is therefore exercised only where one exists (see
``docs/gpu-validation.md``); the CPU test suite covers the pure-Python parts around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = ["cudart", "cuda_call", "GpuInfo", "gpu_info", "DeviceBuffer", "DeviceArray", "Stream"]


def cudart() -> Any:
    """The ``cuda-python`` runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6 layout
        except ImportError:
            raise MissingDependencyError("cuda-python", extra="trt",
                                         purpose="TensorRT device buffers and GPU queries") from None
    return runtime


def cuda_call(result: tuple[Any, ...]) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple, raising on any error code."""
    err, *values = result
    if int(err) != 0:  # cudaSuccess
        _, name = cudart().cudaGetErrorName(err)
        raise EdgesegError(f"CUDA runtime error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class GpuInfo:
    """What an engine is tied to: the GPU model and its compute capability (``"8.7"``)."""

    name: str
    compute_capability: str


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``."""
    prop = cuda_call(cudart().cudaGetDeviceProperties(device))
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}")


class Stream:
    """A CUDA stream owned by one runner."""

    def __init__(self) -> None:
        self._stream = cuda_call(cudart().cudaStreamCreate())

    @property
    def handle(self) -> int:
        return int(self._stream)

    def wait_for(self, producer: int) -> None:
        """Make this stream wait (on the device, without blocking the host) for work queued so far on
        the stream with handle ``producer`` (``__cuda_array_interface__``'s ``"stream"``)."""
        rt = cudart()
        event = cuda_call(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming))
        try:
            cuda_call(rt.cudaEventRecord(event, producer))
            cuda_call(rt.cudaStreamWaitEvent(self._stream, event, 0))
        finally:
            cuda_call(rt.cudaEventDestroy(event))

    def synchronize(self) -> None:
        cuda_call(cudart().cudaStreamSynchronize(self._stream))

    def destroy(self) -> None:
        if self._stream is not None:
            cuda_call(cudart().cudaStreamDestroy(self._stream))
            self._stream = None


class DeviceBuffer:
    """Device memory that grows on demand and is reused across inferences."""

    def __init__(self) -> None:
        self.ptr = 0
        self.nbytes = 0

    def reserve(self, nbytes: int) -> int:
        """Make the buffer at least ``nbytes`` long (contents are not kept); returns the pointer."""
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(cuda_call(cudart().cudaMalloc(max(nbytes, 1))))
            self.nbytes = nbytes
        return self.ptr

    def copy_from_host(self, host: np.ndarray, stream: Stream) -> int:
        """Asynchronously upload a C-contiguous array; the caller keeps ``host`` alive until sync."""
        rt = cudart()
        ptr = self.reserve(host.nbytes)
        cuda_call(rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle))
        return ptr

    def free(self) -> None:
        if self.ptr:
            cuda_call(cudart().cudaFree(self.ptr))
            self.ptr, self.nbytes = 0, 0


@dataclass(frozen=True)
class DeviceArray:
    """A typed view of device memory, consumable without a copy through ``__cuda_array_interface__``.

    ``torch.as_tensor(view, device="cuda")`` or ``cupy.asarray(view)`` wrap it in place. The memory
    belongs to the runner that returned it and is overwritten by its next inference.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        # Version 3 of the protocol; strides None means C-contiguous. The producing stream has been
        # synchronised before the view is handed out, so no "stream" key is needed.
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3}

    def to_host(self) -> np.ndarray:
        """Copy to a new numpy array (synchronous)."""
        rt = cudart()
        out = np.empty(self.shape, self.dtype)
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(rt.cudaMemcpy(out.ctypes.data, self.ptr, self.nbytes, kind))
        return out
