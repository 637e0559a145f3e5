"""Ctrl-C and SIGTERM: a clean stop that never lands inside native code.

Python runs a signal handler between two bytecodes of the main thread, wherever they are. Raising
``KeyboardInterrupt`` there is what makes Ctrl-C stop a loop at once, and every clean-up path
(``finally``, the build's stage records, the video's trailer) is written for it. But when those
bytecodes belong to Python code that a C/C++ extension called back into, the exception unwinds
through frames that do not expect it: a nanobind module being imported turns it into
``std::terminate`` (``lief``, imported by Model Optimizer, aborted a build this way), and
``torch.export``'s frame hooks or TensorRT's logger callbacks are no safer. So the handler raises
only where that cannot happen. Inside a :func:`shielded` block or an import it notes the signal and
raises it at the first safe moment: the end of the outermost shielded block, or a timer tick once
the import is done. A second signal while the first still waits stops the process at once (exit
128 + n), deleting the temporary files being written.

Outside :func:`handle_stop_signals` (edgeseg used as a library), :func:`shielded` installs the
handler for its block only and hands a noted signal to the previous handler when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

__all__ = ["handle_stop_signals", "last_signal", "shielded", "writing"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RETRY_S = 0.05  # how soon a signal that arrived during an import is tried again


class _State:
    active = False  # handle_stop_signals' handlers are installed
    received: list[int] = []  # every stop signal received while active
    pending: int | None = None  # a signal noted and not raised yet
    depth = 0  # shielded blocks the main thread is in
    writing: set[str] = set()  # temporary files being written (deleted by a hard stop)


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (an extension module's init may have called it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _hard_stop(signum: int) -> None:
    for path in list(_State.writing):
        with contextlib.suppress(OSError):
            os.unlink(path)
    name = signal.Signals(signum).name
    # os.write: print() may be mid-write in the very frame this handler interrupted.
    os.write(2, (b"\x1b[?25h" if os.isatty(2) else b"") +  # rich hid the cursor for its progress bars
             f"\ninterrupted by {name} again: stopped at once; files being written were deleted, "
             "finished work is kept\n".encode())
    os._exit(128 + signum)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _State.received.append(signum)
    if _State.pending is not None:
        _hard_stop(signum)
    if _State.depth == 0 and not _importing(frame):
        raise KeyboardInterrupt
    _State.pending = signum
    if _State.depth:
        os.write(2, f"\n{signal.Signals(signum).name}: stopping once the current step is done "
                    "(send it again to stop at once)\n".encode())
    else:
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S, _RETRY_S)


def _on_retry(signum: int, frame: FrameType | None) -> None:
    if _State.pending is None or _State.depth:  # raised already, or a shielded block's end will
        signal.setitimer(signal.ITIMER_REAL, 0)
    elif not _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, 0)
        _State.pending = None
        raise KeyboardInterrupt


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[None]:
    """Deliver SIGINT and SIGTERM as ``KeyboardInterrupt`` while the block runs, noting which came.

    SIGTERM's default action kills the process on the spot: no ``finally`` runs, so a video loses
    its encoder trailer and a build its clean stop. Raised as ``KeyboardInterrupt`` instead, it
    takes every clean-up path written for Ctrl-C, at a safe moment (see the module's docstring);
    :func:`last_signal` then tells the two apart for the exit status (130 or 143). Signals the
    parent set to be ignored stay ignored. Outside the main thread (where Python cannot install
    handlers), or inside another such block, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread() or _State.active:
        yield
        return
    _State.received.clear()
    _State.pending = None
    previous = {s: signal.signal(s, _on_stop_signal) for s in _STOP_SIGNALS
                if signal.getsignal(s) is not signal.SIG_IGN}
    previous_alarm = signal.signal(signal.SIGALRM, _on_retry)
    signal.siginterrupt(signal.SIGALRM, False)  # the retry tick must not fail a system call (EINTR)
    _State.active = True
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.active, pending, _State.pending = False, _State.pending, None
        if pending is not None:  # noted in a shielded block that the handlers were installed for
            handler = previous.get(pending, signal.SIG_IGN)
            if callable(handler):
                handler(pending, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending)


def last_signal() -> int:
    """The last SIGINT/SIGTERM received in :func:`handle_stop_signals`; SIGINT when none was (a
    plain ``KeyboardInterrupt``)."""
    return _State.received[-1] if _State.received else signal.SIGINT


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends (main thread only).

    For calls into native code that runs Python callbacks (``torch.export``, TensorRT's builder,
    Model Optimizer), and for ``torch.save``, which turns a ``KeyboardInterrupt`` half-way into a
    ``RuntimeError`` from its zip writer's clean-up. The signal is raised as ``KeyboardInterrupt``
    when the outermost shielded block ends, even if the block raised.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed_here = not _State.active
    with handle_stop_signals():
        _State.depth += 1
        try:
            yield
        finally:
            _State.depth -= 1
            if _State.depth == 0 and _State.pending is not None and not installed_here:
                _State.pending = None
                raise KeyboardInterrupt  # the user's stop outranks an error the block raised


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Mark ``path`` as a temporary file being written: a hard stop (second signal) deletes it."""
    key = os.fspath(Path(path))
    _State.writing.add(key)
    try:
        yield
    finally:
        _State.writing.discard(key)
