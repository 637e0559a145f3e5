"""Ctrl-C and SIGTERM: a clean stop that never lands inside native code.

Python runs a signal handler between two bytecodes of the main thread, wherever they are. Raising
``KeyboardInterrupt`` there is what makes Ctrl-C stop a loop at once, and every clean-up path
(``finally``, the build's stage records, the video's trailer) is written for it. But when those
bytecodes belong to Python code that a C/C++ extension called back into, the exception unwinds
through frames that do not expect it: a nanobind module being imported turns it into
``std::terminate`` (``lief``, imported by Model Optimizer, aborted a build this way), and
``torch.export``'s frame hooks or TensorRT's logger callbacks are no safer. So the handler raises
only where that cannot happen. Inside a :func:`shielded` block or an import it notes the signal and
raises it at the first safe moment: the end of the outermost shielded block, or a tick of a
SIGALRM timer (armed only then, its previous owner restored after) once the import is done. A
second signal while the first still waits stops the process at once (exit 128 + n), deleting the
temporary files being written.

Outside :func:`handle_stop_signals` (edgeseg used as a library), :func:`shielded` installs the
handler for its block only and hands a noted signal to the previous handler when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["handle_stop_signals", "last_signal", "shielded", "writing"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Delays of the retry timer while an import holds a signal back: one-shot ticks, backing off, so
#: that native code initialising for seconds (torch, TensorRT) sees few interrupted system calls.
_RETRY_S = (0.05, 0.1, 0.2, 0.4)


class _State:
    active = False  # handle_stop_signals' handlers are installed
    closing = False  # ... and being restored: a signal arriving now is only noted
    received: list[int] = []  # every stop signal received while active
    pending: int | None = None  # a signal noted and not raised yet
    depth = 0  # shielded blocks the main thread is in
    writing: set[str] = set()  # temporary files being written (deleted by a hard stop)
    # While the retry timer is armed: the SIGALRM handler and timer it displaced, and when.
    displaced: tuple[Any, tuple[float, float], float] | None = None
    retries = 0


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (an extension module's init may have called it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _say(line: str) -> None:
    # os.write, not print(): print may be mid-write in the very frame the handler interrupted. A
    # closed pipe (`| tee` killed by the same Ctrl-C) must not raise here, inside native code.
    with contextlib.suppress(OSError):
        os.write(2, line.encode())


def _hard_stop(signum: int) -> None:
    try:
        for path in list(_State.writing):
            with contextlib.suppress(OSError):
                os.unlink(path)
        _say(("\x1b[?25h" if os.isatty(2) else "") +  # rich hid the cursor for its progress bars
             f"\ninterrupted by {signal.Signals(signum).name} again: stopped at once; files being "
             "written were deleted, finished work is kept (a build resumes from it when the same "
             "command runs again; training with --resume)\n")
    finally:
        os._exit(128 + signum)


def _arm_retry() -> bool:
    """Schedule the next try at raising a held-back signal; False when SIGALRM is not ours to use."""
    if _State.displaced is None:
        if signal.getsignal(signal.SIGALRM) is None:  # installed from C: cannot be put back
            return False
        handler = signal.signal(signal.SIGALRM, _on_retry)
        signal.siginterrupt(signal.SIGALRM, False)  # restart interrupted system calls (SA_RESTART)
        _State.displaced = (handler, signal.setitimer(signal.ITIMER_REAL, 0), time.monotonic())
        _State.retries = 0
    signal.setitimer(signal.ITIMER_REAL, _RETRY_S[min(_State.retries, len(_RETRY_S) - 1)])
    _State.retries += 1
    return True


def _disarm_retry() -> None:
    """Stop the retry timer; put back the SIGALRM handler and timer it displaced."""
    if _State.displaced is None:
        return
    handler, (remaining, interval), since = _State.displaced
    _State.displaced = None
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)  # also drops SA_RESTART again
    if remaining:
        signal.setitimer(signal.ITIMER_REAL, max(remaining - (time.monotonic() - since), 1e-3), interval)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _State.received.append(signum)
    if _State.closing:  # handle_stop_signals hands it to the restored handler
        _State.pending = _State.pending or signum
        return
    if _State.pending is not None:
        _hard_stop(signum)
    if _State.depth == 0 and not (_importing(frame) and _arm_retry()):
        raise KeyboardInterrupt
    _State.pending = signum
    if _State.depth:
        _say(f"\n{signal.Signals(signum).name}: stopping once the current step is done "
             "(send it again to stop at once)\n")


def _on_retry(signum: int, frame: FrameType | None) -> None:
    if _State.closing:
        return
    if _State.pending is None or _State.depth:  # raised already, or a shielded block's end will
        _disarm_retry()
    elif _importing(frame):
        _arm_retry()
    else:
        _disarm_retry()
        _State.pending = None
        raise KeyboardInterrupt


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[None]:
    """Deliver SIGINT and SIGTERM as ``KeyboardInterrupt`` while the block runs, noting which came.

    SIGTERM's default action kills the process on the spot: no ``finally`` runs, so a video loses
    its encoder trailer and a build its clean stop. Raised as ``KeyboardInterrupt`` instead, it
    takes every clean-up path written for Ctrl-C, at a safe moment (see the module's docstring);
    :func:`last_signal` then tells the two apart for the exit status (130 or 143). Signals the
    parent set to be ignored, or whose handler was installed from C, are left alone. Outside the
    main thread (where Python cannot install handlers), or inside another such block, nothing
    changes.
    """
    if threading.current_thread() is not threading.main_thread() or _State.active:
        yield
        return
    # received and pending are empty here: the exit of the last such block cleared them.
    previous: dict[signal.Signals, Any] = {}
    _State.active = True
    try:
        for signum in _STOP_SIGNALS:
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                previous[signum] = signal.signal(signum, _on_stop_signal)
        yield
    finally:
        # A signal arriving half-way through the restore is only noted (closing), so every
        # handler is put back whatever happens.
        _State.closing = True
        try:
            _disarm_retry()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        finally:
            _State.closing = _State.active = False
        _State.received.clear()  # what last_signal() reports belongs to this block only
        pending, _State.pending = _State.pending, None
        if pending is not None:  # noted in a shielded block that the handlers were installed for
            handler = previous.get(signal.Signals(pending), signal.SIG_IGN)
            if callable(handler):
                handler(pending, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending)


def last_signal() -> int:
    """The last SIGINT/SIGTERM received in the running :func:`handle_stop_signals` block; SIGINT
    when none was (a plain ``KeyboardInterrupt``)."""
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
