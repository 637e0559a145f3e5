"""TrtRunner: what can be checked without TensorRT (the rest runs in tests/trt where TensorRT exists)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeseg.errors import MissingDependencyError
from edgeseg.runners import TrtRunner
from edgeseg.runners.trt import is_c_contiguous


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
