"""Build hook for the fused DDC op (``edgeseg._C``); package metadata lives in pyproject.toml.

``pip install --no-build-isolation -e .`` compiles ``cpp_ext/csrc/*.cpp`` (the op's schema and
CPU kernel) against the installed torch, and adds ``cpp_ext/csrc/cuda/*.cu`` when that torch has
CUDA and nvcc is found (extension-cpp's layout). Switches (environment variables):

* ``EDGESEG_BUILD_EXT=0``: install pure Python; ``edgeseg.ops`` then warns once and runs the
  PyTorch reference instead of the kernel.
* ``USE_CUDA=0``: build the CPU op only, even with a CUDA torch.
* ``DEBUG=1``: ``-O0 -g`` instead of ``-O3``.

``--no-build-isolation`` matters: an isolated build would download its own torch, and the op must
be compiled against the torch it is loaded into.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

CPP_EXT = "cpp_ext"


def _extensions() -> tuple[list, dict]:
    if os.environ.get("EDGESEG_BUILD_EXT", "1") == "0":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("edgeseg: torch is not importable at build time; skipping edgeseg._C", file=sys.stderr)
        return [], {}

    debug = os.environ.get("DEBUG", "0") == "1"
    use_cuda = (
        os.environ.get("USE_CUDA", "1") != "0" and torch.version.cuda is not None and CUDA_HOME is not None
    )
    opt = ["-O0", "-g"] if debug else ["-O3"]
    sources = sorted(glob.glob(f"{CPP_EXT}/csrc/*.cpp"))
    extra_compile_args = {"cxx": [*opt, "-fopenmp"]}
    extension = CppExtension
    if use_cuda:
        sources += sorted(glob.glob(f"{CPP_EXT}/csrc/cuda/*.cu"))
        extra_compile_args["nvcc"] = opt
        extension = CUDAExtension
    ext = extension(
        "edgeseg._C",
        sources,
        include_dirs=[os.path.abspath(f"{CPP_EXT}/include")],
        extra_compile_args=extra_compile_args,
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
