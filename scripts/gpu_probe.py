"""What this machine offers edgeseg's GPU check, as one JSON object on stdout.

Run by ``scripts/gpu_check.py`` in a child process, so that the check itself needs only the standard
library and survives a torch that fails to import (or crashes while starting CUDA). Reports: Python
and the platform, Jetson identity, torch / CUDA / the device, the C++/CUDA build tools that
``torch.utils.cpp_extension`` would use, the Python packages the check's steps need (found without
importing them), whether TensorRT is a real installation, and Jetson power sensors. It does not
import ``edgeseg._C``: a stale build from another torch could crash the process, and the check
rebuilds it anyway.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Import name -> distribution name, for every package a step of the check may need.
MODULES = {
    "numpy": "numpy",
    "pytest": "pytest",
    "rich": "rich",
    "typer": "typer",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "onnxsim": "onnxsim",
    "polygraphy": "polygraphy",
    "modelopt": "nvidia-modelopt",
    "matplotlib": "matplotlib",
    "setuptools": "setuptools",
    "triton": "triton",  # torch.compile's GPU backend (absent from some Jetson torch builds)
}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def modules() -> dict[str, str | None]:
    """``{import name: version}``, None for a package that is not importable."""
    out: dict[str, str | None] = {}
    for name, dist in MODULES.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        out[name] = _version(dist) if found else None
    return out


def jetson() -> dict[str, str] | None:
    """Board model and L4T release on a Jetson, else None."""
    release = Path("/etc/nv_tegra_release")
    model = Path("/proc/device-tree/model")
    if not release.is_file():
        return None
    info = {"l4t": release.read_text(errors="replace").splitlines()[0].strip("# ").strip()}
    if model.is_file():
        info["model"] = model.read_text(errors="replace").strip("\x00 \n")
    return info


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except Exception as e:  # a broken install can raise anything at import (OSError, RuntimeError)
        return {"error": f"{type(e).__name__}: {e}"}
    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(
            device=props.name,
            device_count=torch.cuda.device_count(),
            compute_capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def build_tools() -> dict[str, Any]:
    """nvcc (through CUDA_HOME, as torch's extension builder finds it), ninja, g++."""
    info: dict[str, Any] = {
        "cxx": shutil.which("c++") or shutil.which("g++"),
        "nvcc_on_path": shutil.which("nvcc"),
    }
    try:
        from torch.utils import cpp_extension
    except Exception as e:  # needs setuptools, which Python >= 3.12 no longer ships by default
        info["cpp_extension_error"] = f"{type(e).__name__}: {e}"
        return info
    info["ninja"] = cpp_extension.is_ninja_available()
    home = cpp_extension.CUDA_HOME
    info["cuda_home"] = home
    nvcc = Path(home) / "bin" / "nvcc" if home else None
    if nvcc is not None and nvcc.is_file():
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=30).stdout
        info["nvcc"] = str(nvcc)
        info["nvcc_version"] = next((ln for ln in out.splitlines() if "release" in ln), out.strip())
    else:
        info["nvcc"] = None
    return info


def tensorrt() -> dict[str, Any]:
    try:
        from edgeseg.trt import tensorrt_available
    except ImportError as e:  # edgeseg.trt needs polygraphy, which a bare GPU machine may lack
        return {"available": False, "reason": f"edgeseg.trt does not import ({e})"}
    ok, text = tensorrt_available()
    return {"available": ok, "version" if ok else "reason": text}


def power() -> dict[str, Any]:
    """Jetson power sensors edgeseg bench can read (it prefers the sysfs rails to tegrastats)."""
    from edgeseg.power import find_ina3221_rails

    rails = [r.name for r in find_ina3221_rails()]
    return {"ina3221_rails": rails, "tegrastats": shutil.which("tegrastats")}


def main() -> int:
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "jetson": jetson(),
        "modules": modules(),
        "distributions": MODULES,
        "torch": torch_info(),
    }
    if "error" not in report["torch"]:
        report.update(build_tools=build_tools(), tensorrt=tensorrt(), power=power())
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
