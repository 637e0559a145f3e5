"""Names that become files or folders stay inside their output folder (safe_name, serve exports)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeseg._names import NAME_MAX, safe_name
from edgeseg.errors import EdgesegError
from edgeseg.serve import export_deepstream, export_triton

GOOD = ["demo_dbmsnet", "model.int8", "a", "R18-os16.v2", "x" * NAME_MAX]
BAD = ["", ".", "..", ".x", "../../x", "a/b", "a\\b", "/abs", "-rf", "a b", "é", "x" * (NAME_MAX + 1)]


@pytest.mark.parametrize("value", GOOD)
def test_safe_names_pass_unchanged(value: str, tmp_path: Path) -> None:
    assert safe_name(value, "--name", parent=tmp_path) == value


@pytest.mark.parametrize("value", BAD)
def test_unsafe_names_are_refused(value: str) -> None:
    expected = rf"^--name {re.escape(repr(value))}: a name must be 1-{NAME_MAX} letters"
    with pytest.raises(EdgesegError, match=expected):
        safe_name(value, "--name")


def test_symlink_out_of_parent_is_refused(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    (repo / "model").symlink_to(outside)
    with pytest.raises(EdgesegError, match=r"^model name 'model': .*repo/model resolves outside .*repo"):
        safe_name("model", "model name", parent=repo)


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["..", ".", "../escape", ".hidden"])
def test_triton_name_cannot_leave_the_repository(name: str, rt_build: Path, tmp_path: Path) -> None:
    repo = tmp_path / "deep" / "repo"
    before = _tree(tmp_path)
    with pytest.raises(EdgesegError, match=rf"^Triton model name {name!r}: a name must be"):
        export_triton(rt_build, repo, name=name)
    assert _tree(tmp_path) == before  # nothing written anywhere


@pytest.mark.parametrize("name", ["../../x", "..", "sub/x"])
def test_deepstream_name_cannot_leave_the_output_folder(name: str, rt_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "ds"
    before = _tree(tmp_path)
    with pytest.raises(EdgesegError, match=rf"^DeepStream name {name!r}: a name must be"):
        export_deepstream(rt_build, out, name=name)
    assert _tree(tmp_path) == before


def test_default_name_comes_from_the_resolved_build_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--build .` has no name of its own: the default is the name of the folder it resolves to.
    build = tmp_path / "bad name"
    build.mkdir()
    monkeypatch.chdir(build)
    with pytest.raises(EdgesegError, match=r"^Triton model name 'bad name': a name must be"):
        export_triton(".", tmp_path / "repo")
    with pytest.raises(EdgesegError, match=r"^DeepStream name 'bad name': a name must be"):
        export_deepstream(".", tmp_path / "ds")
