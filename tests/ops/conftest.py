"""Fixtures of the fused-op tests: the C++ source tree, the CUDA compiler (the tiny DDC models and their
ONNX export are in tests/conftest.py: the runner tests use them too)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture
def cpp_ext_dir() -> Path:
    """The repository's cpp_ext/ folder."""
    return Path(__file__).resolve().parents[2] / "cpp_ext"


@pytest.fixture
def nvcc() -> str:
    """nvcc from PATH, CUDA_HOME, CUDA_PATH or /usr/local/cuda; skips the test where there is none."""
    found = shutil.which("nvcc")
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if not found and root and (Path(root) / "bin" / "nvcc").is_file():
            found = str(Path(root) / "bin" / "nvcc")
    if not found:
        pytest.skip("nvcc not found (PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda): CUDA code not compiled")
    return found
