"""Atomic file writes, hashing and small I/O helpers shared by every stage.

Every artifact edgeseg writes goes through :func:`atomic_write` (JSON through :func:`write_json`,
``torch.save`` through :func:`save_torch`): the bytes land in a temporary file in the destination
folder, are fsynced, and are renamed over the target only when complete, so an interrupted run
or a full disk never leaves a truncated file that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edgeseg.errors import EdgesegError
from edgeseg.stopping import shielded, writing

__all__ = ["atomic_write", "save_torch", "write_json", "read_json", "sha256_file", "sha256_bytes"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; fsync it and rename it over ``path`` on success.

    Args:
        path: final destination. Its parent folder is created if missing.
        mode: ``"wb"`` (default) or ``"w"`` for text.

    Yields:
        The open temporary file. On any exception it is deleted and ``path`` is untouched.

    Raises:
        EdgesegError: creating, writing, syncing or renaming the file failed (a full disk, a
            read-only folder...): one line naming ``path`` and the OS's reason.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with writing(tmp):
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
                # mkstemp creates 0600 files; give the artifact the permissions a plain open() would
                # (a Triton/DeepStream server often runs as another user and must read it).
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # A failed write, flush, fsync or rename names no file or the temp file. An OSError naming
        # another file came from the caller's own code in the with-block (opening its input): it
        # is the caller's to report.
        if isinstance(e, OSError) and e.filename in (None, tmp):
            raise _write_error(path, e) from None
        raise


def _write_error(path: Path, e: OSError) -> EdgesegError:
    reason = e.strerror or str(e) or type(e).__name__
    return EdgesegError(f"{path}: could not write it ({reason}); any earlier version is left as it was")


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` a checkpoint or bundle atomically (see :func:`atomic_write`), never cut short
    by Ctrl-C or SIGTERM (:func:`edgeseg.stopping.shielded`)."""
    import torch

    with shielded(), atomic_write(path) as f:
        torch.save(obj, f)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON, atomically.

    JSON has no NaN or infinity (``NaN``/``-Infinity`` tokens break strict parsers), so every
    non-finite float is written as ``null``, the value edgeseg's reports already use for "not
    a number" (e.g. the IoU of a class absent from both masks). NumPy scalars and arrays become
    numbers and lists, paths become strings.
    """
    text = json.dumps(_plain_json(obj), indent=2, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing, unreadable or corrupt file raises :class:`EdgesegError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: file not found") from None
    except OSError as e:
        raise EdgesegError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise EdgesegError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise EdgesegError(f"{path}: not valid JSON ({e})") from None


def _plain_json(obj: Any) -> Any:
    """``obj`` with non-finite floats as None, NumPy values as Python ones and paths as strings."""
    if isinstance(obj, float):  # also numpy.float64, a float subclass
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_json(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return _plain_json(obj.tolist())
    return obj


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
