"""Which TensorRT plugin libraries edgeseg loads, and loading each one once.

Loading a shared library runs its code, so the set is narrow: a library the user named explicitly
(``--plugin-lib``, ``plugin_libs=``), or one the engine metadata records, which must be a file in the
engine's own build folder whose sha256 matches the one recorded when the engine was built. The build
copies the plugin library it used into that folder, so an engine and its plugin travel together.
Every library is loaded by its resolved path (symbolic links followed) and logged.

Polygraphy's ``LoadPlugins`` only ``dlopen``\\ s a library; the ``EdgesegFusedDDC`` library registers its
creator through ``getCreators()``, which TensorRT calls only from ``IPluginRegistry.load_library``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgeseg._io import atomic_write, sha256_file
from edgeseg.errors import EdgesegError

__all__ = ["plugin_library_key", "load_plugin_libraries", "recorded_plugin_libraries",
           "record_plugin_libraries"]

_log = logging.getLogger(__name__)

# Resolved path → library handle, for this process. ``IPluginRegistry.load_library`` fails (returns
# None) when any plugin of the library is already registered, so a second load of the same library
# (the build, then the runtime that checks the engine, then one runner per engine) would fail.
# Libraries go into the global registry, which the builder's and runtime's registries search as their
# parent (``parent_search_enabled`` defaults to True).
_loaded: dict[str, Any] = {}
_lock = threading.Lock()


def plugin_library_key(path: str | os.PathLike[str]) -> str:
    """The resolved path under which a plugin library is loaded once per process.

    Raises:
        EdgesegError: the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"{p}: TensorRT plugin library not found")
    return str(p.resolve())


def load_plugin_libraries(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Load plugin libraries into TensorRT's global plugin registry, each at most once per process.

    Args:
        paths: libraries the caller decided to trust (explicit ones, or :func:`recorded_plugin_libraries`).

    Returns:
        The resolved paths, in order.

    Raises:
        EdgesegError: a file is missing, or TensorRT could not load it.
    """
    resolved = []
    for path in paths:
        key = plugin_library_key(path)
        with _lock:
            if key not in _loaded:
                import tensorrt as trt

                handle = trt.get_plugin_registry().load_library(key)
                if handle is None:
                    raise EdgesegError(f"{key}: TensorRT could not load this plugin library (see its log; "
                                       "it fails when one of its plugins is already registered)")
                _loaded[key] = handle
                _log.info("loaded TensorRT plugin library %s", key)
        resolved.append(key)
    return resolved


def recorded_plugin_libraries(meta: Mapping[str, Any], engine_path: str | os.PathLike[str]) -> list[Path]:
    """The plugin libraries an engine's metadata records, as resolved paths inside its build folder.

    Args:
        meta: the engine metadata (``flags.plugin_libs``: ``[{"name": ..., "sha256": ...}]``).
        engine_path: the engine; its folder is the only place recorded libraries may come from.

    Raises:
        EdgesegError: an entry names a file outside that folder (another directory, ``..``, a symbolic
            link leading elsewhere), is missing, or does not match its recorded sha256.
    """
    folder = Path(engine_path).resolve().parent
    libs = []
    for entry in (meta.get("flags") or {}).get("plugin_libs") or []:
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        path = (folder / str(name)).resolve()
        if path.parent != folder:
            raise EdgesegError(f"{engine_path}: its metadata names the plugin library {name!r}, which is "
                               f"not a file in the engine's folder {folder}; edgeseg loads recorded plugin "
                               "libraries only from there (pass --plugin-lib to load another one)")
        recorded = entry.get("sha256") if isinstance(entry, Mapping) else None
        if recorded is None or sha256_file(plugin_library_key(path)) != recorded:
            raise EdgesegError(f"{path}: this plugin library does not match the sha256 recorded in the "
                               f"metadata of {Path(engine_path).name}; it was replaced after the build")
        libs.append(path)
    return libs


def record_plugin_libraries(paths: Iterable[str | os.PathLike[str]], folder: Path) -> list[dict[str, str]]:
    """Copy the plugin libraries an engine was built with into its build folder, for its metadata.

    Returns:
        ``[{"name": file name in folder, "sha256": ...}]``.

    Raises:
        EdgesegError: two libraries share a file name.
    """
    entries: list[dict[str, str]] = []
    for path in paths:
        src = Path(plugin_library_key(path))
        dst = folder / src.name
        if any(e["name"] == src.name for e in entries):
            raise EdgesegError(f"{src}: two plugin libraries are named {src.name}; rename one")
        if src.parent != folder.resolve():  # not already the build folder's own copy
            with atomic_write(dst) as f:
                f.write(src.read_bytes())
        entries.append({"name": src.name, "sha256": sha256_file(dst)})
    return entries
