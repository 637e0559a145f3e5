"""Plugin libraries: only explicit ones or the build folder's own, by resolved path, once, logged.

The engine metadata used to be able to name any shared library, which loading the engine then ran.
These tests drive the real entry points with a stand-in ``tensorrt`` module whose plugin registry
records what it was asked to load.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest

from edgeseg._io import sha256_file, write_json
from edgeseg.errors import EdgesegError
from edgeseg.trt import load_engine, metadata_path
from edgeseg.trt import plugins as trt_plugins
from edgeseg.trt.metadata import METADATA_FORMAT
from edgeseg.trt.plugins import (
    load_plugin_libraries,
    plugin_library_key,
    record_plugin_libraries,
    recorded_plugin_libraries,
)


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stand-in TensorRT whose plugin registry records ``load_library`` calls; a fresh load-once table."""
    loaded: list[str] = []
    registry = types.SimpleNamespace(load_library=lambda path: loaded.append(path) or object())
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.3.0.30"  # type: ignore[attr-defined]
    fake.Builder = object  # type: ignore[attr-defined]  # what tells a TensorRT install from type stubs
    fake.get_plugin_registry = lambda: registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_plugins, "_loaded", {})
    return loaded


def _library(path: Path, content: bytes = b"\x7fELF plugin") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _engine_with_plugins(folder: Path, entries: list) -> Path:
    engine = _library(folder / "model.int8.engine", b"plan")
    write_json(metadata_path(engine), {"format": METADATA_FORMAT, "precision": "int8",
                                       "tensorrt_version": "10.3.0.30", "gpu": {},
                                       "flags": {"plugin_libs": entries}})
    return engine


@pytest.mark.parametrize("where", ["absolute path elsewhere", "parent folder", "subfolder", "symlink out"])
def test_metadata_cannot_load_a_library_outside_the_build_folder(tmp_path: Path, registry: list[str],
                                                                  where: str) -> None:
    outside = _library(tmp_path / "elsewhere" / "libevil.so")
    folder = tmp_path / "engines" / "demo"
    folder.mkdir(parents=True)
    name = {"absolute path elsewhere": str(outside), "parent folder": "../../elsewhere/libevil.so",
            "subfolder": "sub/libevil.so", "symlink out": "libevil.so"}[where]
    if where == "subfolder":
        _library(folder / "sub" / "libevil.so")
    if where == "symlink out":
        (folder / "libevil.so").symlink_to(outside)
    engine = _engine_with_plugins(folder, [{"name": name, "sha256": sha256_file(outside)}])
    with pytest.raises(EdgesegError, match=r"not a file in the engine's folder .*--plugin-lib") as err:
        load_engine(engine, check_metadata=False)
    assert registry == [] and "\n" not in str(err.value)


def test_metadata_may_not_name_a_bare_path_string(tmp_path: Path, registry: list[str]) -> None:
    # The old metadata format: a path relative to wherever the process happened to run.
    outside = _library(tmp_path / "build" / "trt" / "libedgeseg_trt_plugins.so")
    engine = _engine_with_plugins(tmp_path / "engines" / "demo", [str(outside)])
    with pytest.raises(EdgesegError, match="not a file in the engine's folder"):
        load_engine(engine, check_metadata=False)
    assert registry == []


def test_a_replaced_library_in_the_build_folder_is_refused(tmp_path: Path, registry: list[str]) -> None:
    folder = tmp_path / "engines" / "demo"
    lib = _library(folder / "libedgeseg_trt_plugins.so")
    engine = _engine_with_plugins(folder, [{"name": lib.name, "sha256": sha256_file(lib)}])
    lib.write_bytes(b"something else")
    with pytest.raises(EdgesegError, match="does not match the sha256 recorded"):
        load_engine(engine, check_metadata=False)
    assert registry == []


def test_the_build_folder_library_is_loaded_by_resolved_path_and_named(
        tmp_path: Path, registry: list[str], caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "engines" / "demo"
    lib = _library(folder / "libedgeseg_trt_plugins.so")
    engine = _engine_with_plugins(folder, [{"name": lib.name, "sha256": sha256_file(lib)}])
    meta = {"flags": {"plugin_libs": [{"name": lib.name, "sha256": sha256_file(lib)}]}}
    with caplog.at_level(logging.INFO, logger="edgeseg.trt.plugins"):
        loaded = load_plugin_libraries(recorded_plugin_libraries(meta, engine))
    assert loaded == registry == [str(lib.resolve())]
    assert f"loaded TensorRT plugin library {lib.resolve()}" in caplog.text


def test_an_explicit_library_is_loaded_by_its_resolved_path(tmp_path: Path, registry: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _library(tmp_path / "build" / "trt" / "libedgeseg_trt_plugins.so")
    link = tmp_path / "plugin.so"
    link.symlink_to(lib)
    monkeypatch.chdir(tmp_path)
    assert load_plugin_libraries(["plugin.so"]) == registry == [str(lib.resolve())]


def test_the_build_copies_its_plugin_into_the_build_folder(tmp_path: Path, registry: list[str]) -> None:
    lib = _library(tmp_path / "build" / "trt" / "libedgeseg_trt_plugins.so")
    folder = tmp_path / "engines" / "demo"
    folder.mkdir(parents=True)
    entries = record_plugin_libraries(load_plugin_libraries([lib]), folder)
    assert entries == [{"name": lib.name, "sha256": sha256_file(lib)}]
    assert (folder / lib.name).read_bytes() == lib.read_bytes()
    # What the build recorded is exactly what a later load accepts.
    engine = _engine_with_plugins(folder, entries)
    recorded = recorded_plugin_libraries({"flags": {"plugin_libs": entries}}, engine)
    assert recorded == [(folder / lib.name).resolve()]
    # Rebuilding with the folder's own copy records it without copying it onto itself.
    assert record_plugin_libraries([folder / lib.name], folder) == entries


def test_two_plugin_libraries_with_one_name_are_refused(tmp_path: Path) -> None:
    a, b = _library(tmp_path / "a" / "libp.so", b"a"), _library(tmp_path / "b" / "libp.so", b"b")
    with pytest.raises(EdgesegError, match="two plugin libraries are named libp.so"):
        record_plugin_libraries([a, b], tmp_path / "engines")


def test_missing_plugin_library_is_one_line_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "libedgeseg_trt_plugins.so"
    with pytest.raises(EdgesegError, match="TensorRT plugin library not found") as err:
        load_plugin_libraries([missing])
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


def test_plugin_library_is_keyed_by_its_resolved_path(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _library(tmp_path / "build" / "libplugins.so", b"")
    link = tmp_path / "libplugins-link.so"
    link.symlink_to(lib)
    monkeypatch.chdir(tmp_path)
    spellings = (lib, link, Path("build/libplugins.so"), "build/../build/libplugins.so")
    assert {plugin_library_key(p) for p in spellings} == {str(lib.resolve())}


def test_a_loaded_plugin_library_is_not_loaded_again(tmp_path: Path, registry: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # TensorRT's load_library fails for a library whose plugins are registered already, so a second
    # request for the same file (another spelling of its path) must not reach TensorRT at all.
    lib = _library(tmp_path / "libplugins.so", b"")
    monkeypatch.chdir(tmp_path)
    assert load_plugin_libraries(["libplugins.so", lib]) == [str(lib.resolve())] * 2
    assert registry == [str(lib.resolve())]
