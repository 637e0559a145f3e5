"""Build the EdgesegFusedDDC TensorRT plugin against TensorRT's headers and run its host-only smoke test.

Needs TENSORRT_INCLUDE_DIR (a folder holding NvInferRuntime.h), cmake and nvcc; no GPU and no TensorRT
libraries: the plugin library links against CUDA only, and the smoke test (cpp_ext/tests/
plugin_smoke.cpp) exercises the creator and every plugin method that does not need a GPU. CI has no
TensorRT headers, so there this test skips; docs/gpu-validation.md records the runs against the
headers of TensorRT 10.3 and 11.x.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TENSORRT_INCLUDE_DIR = os.environ.get("TENSORRT_INCLUDE_DIR")

pytestmark = pytest.mark.skipif(
    not TENSORRT_INCLUDE_DIR, reason="TENSORRT_INCLUDE_DIR not set: TensorRT plugin not compiled"
)


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    logs = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{logs}"
    return result.stdout


def test_plugin_builds_and_passes_smoke_test(nvcc: str, cpp_ext_dir: Path, tmp_path: Path) -> None:
    assert TENSORRT_INCLUDE_DIR and (Path(TENSORRT_INCLUDE_DIR) / "NvInferRuntime.h").is_file(), (
        f"TENSORRT_INCLUDE_DIR={TENSORRT_INCLUDE_DIR} has no NvInferRuntime.h"
    )
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    build = tmp_path / "build"
    _run([
        cmake, "-S", str(cpp_ext_dir), "-B", str(build),
        f"-DTENSORRT_INCLUDE_DIR={TENSORRT_INCLUDE_DIR}",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        "-DCMAKE_CUDA_ARCHITECTURES=87",  # one architecture keeps the check fast
    ])  # fmt: skip
    _run([cmake, "--build", str(build), "--parallel", "2"])
    library = build / "libedgeseg_trt_plugins.so"
    assert library.is_file()
    # No undefined symbols outside libc / libstdc++ / CUDA runtime: the library needs no libnvinfer.
    undefined = _run(["nm", "-D", "--undefined-only", str(library)])
    assert "nvinfer" not in undefined.lower()
    exported = _run(["nm", "-D", "--defined-only", str(library)]).split()
    assert "getCreators" in exported and "setLoggerFinder" in exported
    out = _run([str(build / "fused_ddc_plugin_smoke"), str(library)])
    assert out.startswith("PASS"), out
