"""Helpers shared by the CLI commands: the console and option parsing (`--set`, HxW, int lists)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import yaml
from rich.console import Console, ConsoleDimensions

from edgeseg.errors import EXIT_CODE_MEANINGS, EdgesegError, Interrupted

__all__ = [
    "EXIT_CODES_HELP",
    "console",
    "interrupted",
    "last_signal",
    "parse_hw",
    "parse_int_list",
    "parse_sets",
    "stop_signals",
]

#: Width of the console when it is not a terminal: wide enough that no table is ever cut.
UNBOUNDED_WIDTH = 100_000


class _Console(Console):
    """A console that is as wide as its output needs when it writes to a pipe or a file.

    rich sizes a console by the first of stdin/stdout/stderr that is a terminal, else 80 columns,
    and cuts (ellipsizes) table cells to fit. In CI logs, under ``| tee`` and in files a summary
    table must come out whole, so off a terminal the width is unbounded, unless ``COLUMNS`` sets one.
    Decided at each print, because the stream (``sys.stderr``) can be swapped at run time.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or "COLUMNS" in os.environ:
            return size
        return ConsoleDimensions(UNBOUNDED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console: Console = _Console(stderr=True)

#: The exit-code table for ``--help`` epilogs (``\b`` keeps click from re-wrapping the lines).
EXIT_CODES_HELP = "\b\nExit codes (docs/exit-codes.md):\n" + "\n".join(
    f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextmanager
def stop_signals() -> Iterator[None]:
    """Deliver SIGINT and SIGTERM as ``KeyboardInterrupt`` while a command runs, noting which came.

    SIGTERM's default action kills the process on the spot: no ``finally`` runs, so a video loses
    its encoder trailer and a build its clean stop. Raised as ``KeyboardInterrupt`` instead, it
    takes every cleanup path written for Ctrl-C; :func:`last_signal` then tells the two apart for
    the exit status (130 or 143). Signals the parent set to be ignored stay ignored, and outside the
    main thread (where Python cannot install handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {}
    for signum in _STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _on_stop_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def last_signal() -> int:
    """The last SIGINT/SIGTERM received in :func:`stop_signals`; SIGINT when none was (a plain
    ``KeyboardInterrupt``)."""
    return _received[-1] if _received else signal.SIGINT


def interrupted(kept: str) -> Interrupted:
    """The :class:`~edgeseg.errors.Interrupted` to raise from a command's ``except KeyboardInterrupt``.

    Args:
        kept: what is on disk now and how to resume (one line).
    """
    return Interrupted(last_signal(), kept)


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["depth=50", "dilations=[1,3,5,7]"]`` into ``{"depth": 50, "dilations": [1, 3, 5, 7]}``.

    Values are read as YAML scalars/lists (safe loader), so numbers, booleans and lists need no
    quoting; the model config then checks each key and type.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgesegError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise EdgesegError(f"--set {key}: cannot parse value {value!r}") from None
    return out


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """Parse ``"HxW"`` or ``"N"`` (square) into ``(H, W)``.

    Raises:
        EdgesegError: not two positive integers; the message names the option ``what``.
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise EdgesegError(f"{what} expects HxW (e.g. 512x1024) or one size, got {text!r}")
    return hw[0], hw[1]


def parse_int_list(text: str, what: str) -> list[int]:
    """``"1,4"`` → ``[1, 4]`` (positive ints), with an error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgesegError(f"{what} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise EdgesegError(f"{what} expects positive integers, got {text!r}")
    return values
