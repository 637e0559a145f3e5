"""TrtRunner: what can be checked without TensorRT (the engine round trip runs in tests/trt where
TensorRT exists; the device-input preparation where a CUDA GPU exists)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from polygraphy.common import TensorMetadata
from polygraphy.datatype import DataType

from edgeseg.errors import MissingDependencyError
from edgeseg.runners import TrtRunner
from edgeseg.runners.base import TensorMeta
from edgeseg.runners.trt import TENSOR_ALIGNMENT, _device_tensor, _is_device_array, _owned, tensor_metas


def test_constructing_does_not_import_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = TrtRunner(tmp_path / "model.fp16.engine")
    assert runner.name == "tensorrt:model.fp16.engine" and runner.backend == "tensorrt"


def test_activate_without_tensorrt_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = TrtRunner(tmp_path / "model.fp16.engine")
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeseg\[trt\]'") as err, runner:
        pass
    assert "\n" not in str(err.value) and not runner.is_active


def test_polygraphy_metadata_becomes_tensor_meta() -> None:
    # Polygraphy reports TensorRT's dynamic dims as -1 (from Dims) or None, and dtypes as its DataType.
    meta = TensorMetadata().add("images", DataType.FLOAT16, (-1, 3, 64, 64)).add("scale", np.int32, (None,))
    assert tensor_metas(meta) == [TensorMeta("images", np.dtype(np.float16), (None, 3, 64, 64)),
                                  TensorMeta("scale", np.dtype(np.int32), (None,))]


class _CudaArrayInterfaceOnly:
    """What CuPy/pycuda arrays look like to the runner: only ``__cuda_array_interface__``."""

    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}


def test_which_inputs_count_as_device_arrays() -> None:
    assert _is_device_array(_CudaArrayInterfaceOnly())
    assert not _is_device_array(np.zeros(3, np.float32))
    # A CPU tensor that requires grad raises RuntimeError (not AttributeError) from
    # __cuda_array_interface__, so hasattr() alone would crash on it.
    assert not _is_device_array(torch.zeros(3, requires_grad=True))


def test_outputs_do_not_alias_polygraphy_buffers() -> None:
    # Polygraphy hands out views of buffers it reuses for the next inference.
    buffer = torch.arange(6, dtype=torch.float32)
    host = _owned(buffer, to_host=True)
    device = _owned(buffer, to_host=False)
    buffer.zero_()
    assert isinstance(host, np.ndarray) and host.tolist() == [0, 1, 2, 3, 4, 5]
    assert isinstance(device, torch.Tensor) and device.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_inputs_are_made_contiguous_and_aligned() -> None:
    whole = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32, device="cuda").reshape(2, 3, 4, 5)
    tail = whole[1:]  # starts 240 bytes in: TensorRT refuses the address
    assert tail.data_ptr() % TENSOR_ALIGNMENT
    fixed = _device_tensor(tail)
    assert fixed.data_ptr() % TENSOR_ALIGNMENT == 0 and torch.equal(fixed, tail)
    channels_last = whole.to(memory_format=torch.channels_last)
    assert _device_tensor(channels_last).is_contiguous()
    assert _device_tensor(whole).data_ptr() == whole.data_ptr()  # aligned and dense: no copy

    class Foreign:  # a CuPy-like producer on the legacy default stream (CUDA array interface v3: 1)
        __cuda_array_interface__ = dict(whole.__cuda_array_interface__, version=3, stream=1)

    # Stream 1 is a marker, not a handle: torch.cuda.ExternalStream(1) raised "invalid StreamId1"
    # here on an H200 (2026-12-04) before the marker values were handled.
    assert _device_tensor(Foreign()).data_ptr() == whole.data_ptr()

    side = torch.cuda.Stream()

    class OnItsStream:  # a producer with its own stream: a real handle, synchronized as such
        __cuda_array_interface__ = dict(whole.__cuda_array_interface__, version=3, stream=side.cuda_stream)

    assert _device_tensor(OnItsStream()).data_ptr() == whole.data_ptr()
