"""mypy over the TensorRT code paths, against the tensorrt-stubs type stubs.

TensorRT cannot be installed on the machines this project tests on, so static typing against
NVIDIA's API (as captured by ``tensorrt-stubs``, TensorRT 10.13) is the check that the builder and
runner call methods that exist with arguments of the right types.

Two wrinkles of tensorrt-stubs 10.13 are handled here, in a temporary copy, never in site-packages:
  * it installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker, so mypy ignores it unless the
    folder is put on ``MYPYPATH``;
  * a handful of its lines are not valid Python (parameters named ``in``; a parameter without a
    default after defaulted ones), which stops mypy; they are repaired mechanically;
  * it declares the module-level alias ``bool: DataType`` (``tensorrt.bool``), which shadows the
    builtin in every ``-> bool`` of the same file; the alias is dropped (edgeseg never uses it);
  * mypy reports many errors *inside* the stubs (undefined ``capsule`` / ``typing_extensions``
    names, incompatible overrides); each stub file gets ``# mypy: ignore-errors`` so that only
    edgeseg's own code is judged. Unresolvable stub types degrade to ``Any``.
A canary file with a misspelt TensorRT attribute must fail, proving the stubs are really in use.
Imports outside the checked files are skipped (``--follow-imports skip``; stubs are still read), so
the check stays fast and judges only these modules.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The TensorRT code paths, plus the few edgeseg modules they import (so those are typed, not Any).
CHECKED = ["edgeseg/trt", "edgeseg/runners/trt.py", "edgeseg/_io.py", "edgeseg/errors.py",
           "edgeseg/runners/base.py", "edgeseg/stopping.py"]


def _split_params(params: str) -> list[str]:
    """Split a parameter list on top-level commas."""
    out, depth, current = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [*out, current]


def _repair(line: str) -> str:
    """Make one stub line parseable: rename keyword-named parameters, default trailing ones."""
    line = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*:)\s*$", line)
    if not match:
        return line
    params, seen_default = [], False
    for p in _split_params(match.group(2)):
        if "=" in p:
            seen_default = True
        elif seen_default and ":" in p and not p.strip().startswith("*"):
            p = f"{p} = ..."
        params.append(p)
    return match.group(1) + ",".join(params) + match.group(3)


def _stub_dir(tmp: Path) -> Path:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.fail("tensorrt-stubs is not installed (make venv installs it with --no-deps)")
    site = Path(spec.origin).parent.parent
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, tmp / package)
    for stub in tmp.rglob("*.pyi"):
        lines = stub.read_text().splitlines()
        fixed = []
        for line in lines:
            if line.startswith("bool: "):
                continue
            if line.lstrip().startswith("def "):
                try:
                    ast.parse(line.strip() + " ...")
                except SyntaxError:
                    line = _repair(line)
            fixed.append(line)
        stub.write_text("# mypy: ignore-errors\n" + "\n".join(fixed) + "\n")
    return tmp


def _mypy(stubs: Path, cache: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MYPYPATH=str(stubs))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(cache), "--follow-imports", "skip", "--no-error-summary", *targets],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_mypy_trt_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = _stub_dir(tmp_path / "stubs")
    canary = tmp_path / "canary.py"
    canary.write_text("import tensorrt as trt\n\nflag = trt.BuilderFlag.NO_SUCH_FLAG\n")
    cache = tmp_path / "cache"

    canary_run = _mypy(stubs, cache, str(canary))
    assert canary_run.returncode == 1 and "NO_SUCH_FLAG" in canary_run.stdout, (
        "mypy did not read the TensorRT stubs:\n" + canary_run.stdout + canary_run.stderr)

    run = _mypy(stubs, cache, *CHECKED)
    assert run.returncode == 0, run.stdout + run.stderr
