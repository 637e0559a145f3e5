"""Names that become file or folder names: a build's name, a Triton model name, a file prefix.

A name given on the command line (or derived from a file name) is joined to an output folder, so
it must stay *one* path component inside that folder: no separators, no ``.``/``..``, no hidden
name. Only a small character set is accepted, and the joined path is resolved to be sure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgeseg.errors import EdgesegError

__all__ = ["safe_name", "NAME_MAX"]

#: Longest accepted name; leaves room for suffixes and atomic_write's temp prefix under 255 bytes.
NAME_MAX = 128
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def safe_name(value: str, what: str, parent: str | os.PathLike[str] | None = None) -> str:
    """Check that ``value`` can name a file or folder of its own.

    Args:
        value: the name.
        what: how the error names it, e.g. ``"--name"`` or ``"model name"``.
        parent: the folder it will be created in. When given, ``parent / value`` must also resolve
            to a direct child of ``parent`` (an existing symlink pointing elsewhere is refused).

    Returns:
        ``value``, unchanged.

    Raises:
        EdgesegError: empty, too long, a character outside letters, digits, ``_``, ``.`` and ``-``,
            a first character that is not a letter or digit, or a path that escapes ``parent``.
    """
    if not isinstance(value, str) or not _SAFE.fullmatch(value) or len(value) > NAME_MAX:
        raise EdgesegError(
            f"{what} {value!r}: a name must be 1-{NAME_MAX} letters, digits, '_', '.' or '-', starting "
            "with a letter or digit (it becomes a file or folder name)"
        )
    if parent is not None:
        root = Path(parent).resolve()
        if (root / value).resolve().parent != root:
            raise EdgesegError(f"{what} {value!r}: {Path(parent) / value} resolves outside {parent}")
    return value
