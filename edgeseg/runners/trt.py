"""TensorRT backend: runs a ``model.<precision>.engine`` built by :func:`edgeseg.trt.build_engine`.

Unverified: written against the documented TensorRT 10/11 Python API (name-based I/O:
``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) and cuda-python's runtime bindings, and type-checked with mypy against
``tensorrt-stubs``; no machine this project is tested on has TensorRT, so it has never executed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta

if TYPE_CHECKING:
    from edgeseg.trt._cuda import DeviceBuffer, Stream
    from edgeseg.trt.engine import LoadedEngine

__all__ = ["TrtRunner"]

#: ``IExecutionContext::setTensorAddress`` needs at least this alignment (NvInferRuntime.h, 10.x and 11.x).
TENSOR_ALIGNMENT = 256


class TrtRunner(BaseRunner):
    """Run a TensorRT engine on a CUDA device.

    Inputs may be numpy arrays (uploaded through runner-owned device buffers) or any object with
    ``__cuda_array_interface__`` (PyTorch CUDA tensors, CuPy arrays, pycuda ``GPUArray``), whose
    device memory is handed to TensorRT directly, with no host copy. TensorRT needs 256-byte aligned
    tensor addresses; a device input that is not (a view at an offset into another tensor) is first
    copied on the device into a runner-owned buffer.

    Args:
        engine_path: the engine file; its ``.json`` metadata must sit beside it.
        check_metadata: refuse an engine built for another TensorRT version or GPU (with an
            explanation) instead of letting TensorRT fail. Defaults to True.
        copy_outputs_to_host: return numpy arrays (True) or :class:`~edgeseg.trt._cuda.DeviceArray`
            views of device memory (False). Defaults to numpy when any input was a host array and to
            device views when every input was already on the device. Device views belong to the runner
            and are overwritten by its next :meth:`infer`; copy them to keep them.
        plugin_libs: plugin libraries to load. Defaults to those recorded in the metadata.
        device: CUDA device index. Defaults to 0.
        name: label for reports. Defaults to ``"tensorrt:<file name>"``.
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike[str],
        *,
        check_metadata: bool = True,
        copy_outputs_to_host: bool | None = None,
        plugin_libs: Sequence[str | os.PathLike[str]] = (),
        device: int = 0,
        name: str | None = None,
    ) -> None:
        self.engine_path = Path(engine_path)
        super().__init__(name or f"tensorrt:{self.engine_path.name}")
        self.check_metadata = check_metadata
        self.copy_outputs_to_host = copy_outputs_to_host
        self.plugin_libs = tuple(plugin_libs)
        self.device = device
        self._loaded: LoadedEngine | None = None
        self._context: Any = None
        self._stream: Stream | None = None
        self._buffers: dict[str, DeviceBuffer] = {}

    @property
    def metadata(self) -> dict[str, Any]:
        """The engine's metadata (available once active)."""
        return self._engine().metadata

    def _engine(self) -> LoadedEngine:
        if self._loaded is None:
            raise EdgesegError(f"runner {self.name} is not active; use it as a context manager")
        return self._loaded

    # --- lifecycle ------------------------------------------------------------------------
    def activate_impl(self) -> None:
        from edgeseg.trt._cuda import DeviceBuffer, Stream
        from edgeseg.trt.engine import load_engine

        self._loaded = load_engine(self.engine_path, check_metadata=self.check_metadata,
                                   plugin_libs=self.plugin_libs, device=self.device)
        engine = self._loaded.engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EdgesegError(f"{self.name}: TensorRT could not create an execution context "
                               "(out of device memory?)")
        self._stream = Stream()
        self._buffers = {engine.get_tensor_name(i): DeviceBuffer() for i in range(engine.num_io_tensors)}

    def deactivate_impl(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        # Context before engine before runtime: each depends on the next.
        self._context = None
        self._loaded = None

    # --- metadata -------------------------------------------------------------------------
    def _io(self, want_input: bool) -> list[TensorMeta]:
        import tensorrt as trt

        from edgeseg.trt.builder import dims_to_tuple

        engine = self._engine().engine
        metas = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if (engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT) != want_input:
                continue
            shape = tuple(None if d < 0 else d for d in dims_to_tuple(engine.get_tensor_shape(name)))
            metas.append(TensorMeta(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape))
        return metas

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return self._io(want_input=True)

    def get_output_metadata(self) -> list[TensorMeta]:
        """Names, dtypes and (possibly dynamic) shapes of the engine's outputs."""
        self._require_active()
        return self._io(want_input=False)

    # --- inference ------------------------------------------------------------------------
    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        from edgeseg.trt._cuda import DeviceArray
        from edgeseg.trt.builder import dims_to_tuple

        context, stream = self._context, self._stream
        if stream is None:
            raise EdgesegError(f"runner {self.name} is not active; use it as a context manager")
        on_device = [hasattr(v, "__cuda_array_interface__") for v in feed.values()]
        to_host = self.copy_outputs_to_host if self.copy_outputs_to_host is not None else not all(on_device)
        staged = []  # host arrays whose upload is in flight; kept alive until the stream syncs

        for (name, value), device_resident in zip(feed.items(), on_device, strict=True):
            if device_resident:
                interface = value.__cuda_array_interface__
                ptr = _device_pointer(name, interface, stream)
                if not is_tensor_aligned(ptr):
                    # The source stays alive in `feed` until the stream is synchronised below.
                    ptr = self._copy_on_device(name, ptr, _nbytes(interface), stream)
            else:
                host = np.ascontiguousarray(value)
                staged.append(host)
                ptr = self._buffers[name].copy_from_host(host, stream)
            if not context.set_input_shape(name, tuple(value.shape)):
                raise EdgesegError(f"{self.name}: input '{name}' shape {tuple(value.shape)} is outside the "
                                   f"engine's optimization profile {self._profile(name)}")
            self._bind(name, ptr)

        outputs: dict[str, DeviceArray] = {}
        for meta in self.get_output_metadata():
            shape = dims_to_tuple(context.get_tensor_shape(meta.name))
            ptr = self._buffers[meta.name].reserve(output_nbytes(meta.name, shape, meta.dtype))
            self._bind(meta.name, ptr)
            outputs[meta.name] = DeviceArray(ptr, shape, meta.dtype)

        if not context.execute_async_v3(stream.handle):
            raise EdgesegError(f"{self.name}: TensorRT failed to enqueue the inference (see its log above)")
        stream.synchronize()  # after this the staged host arrays may be released
        if to_host:
            return {name: view.to_host() for name, view in outputs.items()}
        return dict(outputs)

    def _bind(self, name: str, ptr: int) -> None:
        if not self._context.set_tensor_address(name, ptr):
            raise EdgesegError(f"{self.name}: TensorRT refused the device address {ptr:#x} of tensor "
                               f"'{name}' (see its log above)")

    def _copy_on_device(self, name: str, src: int, nbytes: int, stream: Stream) -> int:
        """Copy ``nbytes`` at ``src`` into the runner's (cudaMalloc'd, so 256-byte aligned) buffer for
        ``name``, ordered on the runner's stream; returns the buffer's address."""
        from edgeseg.trt._cuda import cuda_call, cudart

        rt = cudart()
        dst = self._buffers[name].reserve(nbytes)
        cuda_call(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                     stream.handle))
        return dst

    def _profile(self, name: str) -> Any:
        for entry in self.metadata.get("inputs", []):
            if entry.get("name") == name:
                return entry.get("profile", "unknown")
        return "unknown"


def is_c_contiguous(interface: dict[str, Any]) -> bool:
    """Whether a ``__cuda_array_interface__`` describes C-contiguous memory (``strides`` None or dense)."""
    strides = interface.get("strides")
    if strides is None:
        return True
    step = np.dtype(interface["typestr"]).itemsize
    for dim, stride in zip(reversed(interface["shape"]), reversed(strides), strict=True):
        # A dim of size 1 may carry any stride: it is never stepped over.
        if dim != 1 and stride != step:
            return False
        step *= dim
    return True


def is_tensor_aligned(ptr: int) -> bool:
    """Whether a device address meets TensorRT's tensor-address alignment (:data:`TENSOR_ALIGNMENT`)."""
    return ptr % TENSOR_ALIGNMENT == 0


def output_nbytes(name: str, shape: Sequence[int], dtype: np.dtype) -> int:
    """Bytes of an output of ``shape`` once the input shapes are set.

    Raises:
        EdgesegError: a dimension is still ``-1`` (a data-dependent output shape, which would need an
            ``IOutputAllocator``; this runner does not provide one).
    """
    if any(d < 0 for d in shape):
        raise EdgesegError(f"output '{name}' has a data-dependent shape {tuple(shape)}; the TensorRT runner "
                           "needs output shapes that follow from the input shapes")
    return math.prod(shape) * dtype.itemsize


def _nbytes(interface: dict[str, Any]) -> int:
    return math.prod(interface["shape"]) * np.dtype(interface["typestr"]).itemsize


def _device_pointer(name: str, interface: dict[str, Any], stream: Stream) -> int:
    """Device pointer of a ``__cuda_array_interface__`` producer, after ordering its stream before ours."""
    if not is_c_contiguous(interface):
        raise EdgesegError(f"input '{name}' must be C-contiguous on the device (call .contiguous())")
    producer = interface.get("stream")
    if producer is not None:
        # Protocol v3: the producer's pending work on that stream must finish before we read.
        stream.wait_for(int(producer))
    return int(interface["data"][0])
