"""TensorRT backend: runs a ``model.<precision>.engine`` built by :func:`edgeseg.trt.build_engine`.

Inference is Polygraphy's ``TrtRunner`` (name-based I/O, ``execute_async_v3``, device buffers, output
allocator, maintained by NVIDIA for each TensorRT release). This class adapts it to edgeseg's runner
interface and adds what Polygraphy leaves to the caller: the engine is opened through
:func:`edgeseg.trt.load_engine` (metadata, plugin libraries, DLA core); device inputs are made
contiguous, 256-byte aligned and ordered after their producer's stream; outputs belong to the caller.

Unverified: no machine this project is tested on has TensorRT, so it has never executed; it is
type-checked with mypy against ``tensorrt-stubs``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from polygraphy.backend.trt import TrtRunner as PolygraphyTrtRunner
from polygraphy.datatype import DataType

from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta
from edgeseg.trt.engine import LoadedEngine, load_engine, run_polygraphy

__all__ = ["TrtRunner", "TENSOR_ALIGNMENT", "tensor_metas"]

#: ``IExecutionContext::setTensorAddress`` needs at least this alignment (NvInferRuntime.h, 10.x and 11.x).
#: Polygraphy passes device pointers through unchanged.
TENSOR_ALIGNMENT = 256


def tensor_metas(metadata: Mapping[str, Any]) -> list[TensorMeta]:
    """Polygraphy's ``TensorMetadata`` (name → (DataType, shape with -1 or None for dynamic dims))
    as edgeseg's :class:`TensorMeta` list."""
    return [TensorMeta(name, np.dtype(DataType.to_dtype(DataType.from_dtype(dtype), "numpy")),
                       tuple(None if d is None or int(d) < 0 else int(d) for d in shape))
            for name, (dtype, shape) in metadata.items()]


class TrtRunner(BaseRunner):
    """Run a TensorRT engine on the current CUDA device.

    Inputs may be numpy arrays (uploaded by Polygraphy into runner-owned device buffers) or GPU arrays:
    PyTorch CUDA tensors, or anything with ``__cuda_array_interface__`` (CuPy, pycuda ``GPUArray``),
    which is wrapped as a PyTorch tensor without a copy (so it needs a CUDA build of PyTorch). Their
    device memory is handed to TensorRT directly; a strided or unaligned one (``x[1:]``) is first
    copied on the device. Outputs are numpy arrays when any input was a host array and PyTorch CUDA
    tensors when all were on the device; either way they are new arrays the caller owns (Polygraphy
    reuses its output buffers across inferences).

    Args:
        engine_path: the engine file; its ``.json`` metadata must sit beside it.
        check_metadata: refuse an engine built for another TensorRT version or GPU (with an
            explanation) instead of letting TensorRT fail. Defaults to True.
        plugin_libs: plugin libraries to load (``--plugin-lib``). Defaults to those recorded in the
            metadata, from the engine's folder.
        name: label for reports. Defaults to ``"tensorrt:<file name>"``.
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike[str],
        *,
        check_metadata: bool = True,
        plugin_libs: Sequence[str | os.PathLike[str]] = (),
        name: str | None = None,
    ) -> None:
        self.engine_path = Path(engine_path)
        super().__init__(name or f"tensorrt:{self.engine_path.name}")
        self.check_metadata = check_metadata
        self.plugin_libs = tuple(plugin_libs)
        self._loaded: LoadedEngine | None = None
        self._runner: Any = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The engine's metadata (available once active)."""
        return self._engine().metadata

    @property
    def loaded_plugin_libs(self) -> list[str]:
        """Resolved paths of the plugin libraries loaded for this engine (available once active)."""
        return self._engine().plugin_libs

    def _engine(self) -> LoadedEngine:
        if self._loaded is None:
            raise EdgesegError(f"runner {self.name} is not active; use it as a context manager")
        return self._loaded

    def activate_impl(self) -> None:
        loaded = load_engine(self.engine_path, check_metadata=self.check_metadata,
                             plugin_libs=self.plugin_libs)
        runner = PolygraphyTrtRunner(loaded.engine, name=self.name)
        run_polygraphy(f"{self.name}: could not create a TensorRT execution context", runner.activate)
        self._loaded, self._runner = loaded, runner

    def deactivate_impl(self) -> None:
        # Runner (context, buffers, stream) before engine before runtime: each depends on the next.
        self._runner.deactivate()
        self._runner = None
        self._loaded = None

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return tensor_metas(self._runner.get_input_metadata(use_numpy_dtypes=False))

    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        on_device = [_is_device_array(v) for v in feed.values()]
        to_host = not all(on_device)
        prepared = {name: _device_tensor(v) if dev else np.asarray(v)
                    for (name, v), dev in zip(feed.items(), on_device, strict=True)}
        # Inputs were checked by BaseRunner; the copy to host is done below, into new arrays.
        out = run_polygraphy(f"{self.name}: TensorRT inference failed", lambda: self._runner.infer(
            prepared, check_inputs=False, copy_outputs_to_host=False))
        return {name: _owned(value, to_host) for name, value in out.items()}


def _is_device_array(value: Any) -> bool:
    # PyTorch first: a tensor that requires grad raises RuntimeError from __cuda_array_interface__.
    is_cuda = getattr(value, "is_cuda", None)
    return bool(is_cuda) if is_cuda is not None else hasattr(value, "__cuda_array_interface__")


# CUDA Array Interface v3 stream values that are not stream handles (legacy, per-thread default).
_DEFAULT_STREAM_IDS = (1, 2)


def _device_tensor(value: Any) -> Any:
    """A contiguous, aligned PyTorch CUDA tensor over ``value``'s memory, once its producer is done."""
    import torch

    if not isinstance(value, torch.Tensor):
        stream = value.__cuda_array_interface__.get("stream")
        if stream in _DEFAULT_STREAM_IDS:
            # Protocol v3's 1 / 2 name the legacy / per-thread default stream, not a handle:
            # ExternalStream(1) raised "invalid StreamId1" on an H200; a device sync covers both.
            torch.cuda.synchronize()
        elif stream is not None:
            # Protocol v3: work pending on the producer's stream must finish before TensorRT reads.
            torch.cuda.ExternalStream(int(stream)).synchronize()
        value = torch.as_tensor(value, device="cuda")
    elif torch.cuda.current_stream(value.device) != torch.cuda.default_stream(value.device):
        # Polygraphy's stream is ordered after the legacy default stream only; not after others.
        torch.cuda.current_stream(value.device).synchronize()
    if not value.is_contiguous() or value.data_ptr() % TENSOR_ALIGNMENT:
        value = value.clone(memory_format=torch.contiguous_format)  # the caching allocator aligns to 512
    return value


def _owned(value: Any, to_host: bool) -> Any:
    """A copy of one Polygraphy output (a view of its reused buffers) that the caller owns."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to("cpu", copy=True).numpy() if to_host else value.clone()
    return value.numpy()  # a Polygraphy DeviceView (only host inputs): copied into a new numpy array
