"""mypy over the whole package (the project's ``[tool.mypy]`` settings) finds nothing.

The TensorRT paths are also checked against NVIDIA's API stubs in ``tests/trt/test_typecheck.py``;
here every module is judged, so a type error anywhere fails CI rather than waiting for a reviewer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors_in_edgeseg(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "edgeseg"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout
