"""The declared dependencies are the real ones: each needed, none an sdist that breaks a fresh install."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _requirements() -> dict[str, str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return {re.split(r"[\s\[<>=!;~]", spec, maxsplit=1)[0].lower(): spec for spec in project["dependencies"]}


def test_int8_quantizer_imports_the_packages_declared_for_it() -> None:
    # modelopt.onnx.quantization imports these at import time: without them the INT8 path dies.
    import modelopt.onnx.quantization  # noqa: F401

    declared = _requirements()
    needed = (("lief", "lief"), ("onnxslim", "onnxslim"), ("onnx_graphsurgeon", "onnx-graphsurgeon"))
    for module, dist in needed:
        assert module in sys.modules, f"modelopt no longer imports {module}: drop {dist} from pyproject.toml"
        assert dist in declared, f"{dist} is imported by the INT8 quantizer but not declared"


def test_no_sdist_only_dependency_comes_back() -> None:
    declared = _requirements()
    assert "cppimport" not in declared
    # The [onnx] extra of nvidia-modelopt is what pulled cppimport in.
    assert "[" not in declared["nvidia-modelopt"], declared["nvidia-modelopt"]
    with pytest.raises(importlib.metadata.PackageNotFoundError, match="cppimport"):
        importlib.metadata.distribution("cppimport")


def test_test_only_packages_live_in_the_dev_extra() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extra = project["optional-dependencies"]["dev"]
    dev = {re.split(r"[\s\[<>=!;~]", s, maxsplit=1)[0].lower() for s in extra}
    declared = _requirements()
    test_only = ("pytest", "pytest-xdist", "hypothesis", "onnxconverter-common", "ruff", "mypy",
                 "transformers")
    for name in test_only:
        assert name in dev and name not in declared, name
