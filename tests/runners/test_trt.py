"""TrtRunner: what can be checked without TensorRT (the rest runs in tests/trt where TensorRT exists)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.runners import TrtRunner
from edgeseg.runners.trt import is_c_contiguous, is_tensor_aligned, output_nbytes


def test_constructing_does_not_import_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = TrtRunner(tmp_path / "model.fp16.engine")
    assert runner.name == "tensorrt:model.fp16.engine" and runner.backend == "tensorrt"


def test_activate_without_tensorrt_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = TrtRunner(tmp_path / "model.fp16.engine")
    with pytest.raises(MissingDependencyError) as err, runner:
        pass
    assert "pip install 'edgeseg[trt]'" in str(err.value) and "\n" not in str(err.value)
    assert not runner.is_active


@pytest.mark.parametrize(
    ("shape", "strides", "contiguous"),
    [
        ((2, 3, 4, 5), None, True),
        ((2, 3, 4, 5), (240, 80, 20, 4), True),
        ((2, 3, 4, 5), (240, 4, 60, 12), False),     # channels_last
        ((1, 3, 4, 5), (999, 80, 20, 4), True),      # size-1 dim: its stride is never used
        ((2, 3, 4, 5), (480, 160, 40, 8), False),    # every other element
    ],
)
def test_contiguity_of_cuda_array_interface(shape: tuple, strides: tuple | None, contiguous: bool) -> None:
    iface = {"shape": shape, "strides": strides, "typestr": "<f4", "data": (0, False), "version": 3}
    assert is_c_contiguous(iface) is contiguous


@pytest.mark.parametrize(
    ("ptr", "aligned"),
    [(0x7F0000000000, True), (0x7F0000000100, True), (0x7F0000000080, False), (0x7F0000000004, False)],
)
def test_tensor_address_alignment(ptr: int, aligned: bool) -> None:
    # set_tensor_address needs 256-byte alignment; e.g. torch's x[1:] of a (2,3,4,5) float32 tensor
    # starts 240 bytes in and is copied into an aligned runner buffer first.
    assert is_tensor_aligned(ptr) is aligned


def test_output_bytes_and_data_dependent_shapes() -> None:
    assert output_nbytes("logits", (2, 3, 16, 16), np.dtype(np.float16)) == 2 * 3 * 16 * 16 * 2
    with pytest.raises(EdgesegError, match="output 'boxes' has a data-dependent shape"):
        output_nbytes("boxes", (-1, 4), np.dtype(np.float32))
