"""A wheel install works on its own: no source tree, no editable finder, any working folder.

Builds the wheel from the checkout's files, installs it into a fresh venv (CPU torch pin first, then
the wheel's declared dependencies from the index, so a missing or sdist-only dependency fails
here), and runs the CLI from an empty folder. This is the path a new user takes with `pip install`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]


def _source_files(dest: Path) -> None:
    """Copy what a clean clone would hold (tracked plus new, not ignored) into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a fresh venv's bin/ with the wheel of this checkout installed."""
    if not (REPO / ".git").exists():
        pytest.fail("the wheel test copies the checkout's files with git; run it from a git clone")
    import torch

    root = tmp_path_factory.mktemp("wheel")
    src, wheels, env_dir = root / "src", root / "wheels", root / "venv"
    src.mkdir()
    _source_files(src)
    # --no-build-isolation: the C++ op compiles against this interpreter's torch, as `make` does.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(src)], cwd=root, timeout=900)
    (wheel,) = wheels.glob("edgeseg-*.whl")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    torch_spec = os.environ.get("TORCH_SPEC", f"torch=={torch.__version__.split('+')[0]}")
    _run([*pip, torch_spec], cwd=root, timeout=900)
    _run([*pip, str(wheel)], cwd=root, timeout=1200)
    return env_dir / "bin"


def test_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "python"), "-c", "import edgeseg, edgeseg.assets as a; "
                "print(edgeseg.__file__); print(a.CALIBRATION_DIR)"], cwd=tmp_path, timeout=120).stdout
    module_file, calib_dir = out.split()
    assert Path(module_file).is_relative_to(installed.parent), module_file
    assert not Path(module_file).is_relative_to(REPO)
    assert (Path(calib_dir) / "demo.yaml").is_file()


def test_list_targets_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "edgeseg"), "build", "--list-targets"], cwd=tmp_path, timeout=120)
    shipped = sorted(p.stem for p in (REPO / "edgeseg" / "assets" / "targets").glob("*.toml"))
    assert len(shipped) >= 5
    text = out.stdout + out.stderr
    for name in shipped:
        assert name in text, f"--list-targets does not list {name}:\n{text}"


def test_demo_int8_build_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    _run([str(installed / "edgeseg"), "build", "--precision", "int8"], cwd=tmp_path, timeout=1200)
    folder = tmp_path / "engines" / "demo_dbmsnet"
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"] is True
    assert (folder / "model.int8.onnx").is_file()
    assert any(c["precision"] == "int8" and c["passed"] for c in report["candidates"])
