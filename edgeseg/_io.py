"""Atomic file writes, hashing and small I/O helpers shared by every stage.

Every artifact edgeseg writes goes through :func:`atomic_write`: the bytes land in a temporary
file in the destination folder and are renamed over the target only when complete, so an
interrupted run never leaves a truncated file that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "write_json", "read_json", "sha256_file", "sha256_bytes"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    Args:
        path: final destination. Its parent folder is created if missing.
        mode: ``"wb"`` (default) or ``"w"`` for text.

    Yields:
        The open temporary file. On an exception it is deleted and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            # mkstemp creates 0600 files; give the artifact the permissions a plain open() would
            # (a Triton/DeepStream server often runs as another user and must read it).
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or corrupt file raises :class:`EdgesegError` naming it."""
    from edgeseg.errors import EdgesegError

    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise EdgesegError(f"{path}: not valid JSON ({e})") from None


def _json_default(obj: Any) -> Any:
    # numpy scalars / arrays and Paths show up in reports; turn them into plain JSON values.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
