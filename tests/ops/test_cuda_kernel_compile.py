"""Compile the CUDA kernel with nvcc even where torch is CPU-only (CI): catches compile errors early.

torch.utils.cpp_extension refuses .cu sources with a CPU torch, so setup.py builds only the CPU op
there; this test compiles the torch-free kernel file on its own (to an object file; nothing runs).
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_cuda_kernel_compiles_with_nvcc(nvcc: str, cpp_ext_dir: Path, tmp_path: Path) -> None:
    obj = tmp_path / "fused_ddc_kernel.o"
    cmd = [
        nvcc, "-c", "-std=c++17", "-Xcompiler", "-fPIC,-Wall,-Wextra", "-Werror", "all-warnings",
        # Jetson Orin (JetPack 6); the kernel has no architecture-specific code paths.
        "-gencode", "arch=compute_87,code=sm_87",
        "-I", str(cpp_ext_dir / "include"),
        str(cpp_ext_dir / "csrc" / "cuda" / "fused_ddc_kernel.cu"), "-o", str(obj),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"nvcc failed:\n{result.stdout}\n{result.stderr}"
    assert obj.stat().st_size > 0
