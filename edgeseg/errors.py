"""The exceptions users see, and the process exit codes, defined once here.

Anything raised as :class:`EdgesegError` is a problem with the user's input or environment (a bad
file, a missing optional dependency, a value out of range): the CLI prints its message on one line
and exits with the error's :attr:`~EdgesegError.exit_code`. Any other exception is a bug in
edgeseg and keeps its traceback. ``edgeseg --help`` and ``docs/exit-codes.md`` list the codes.
"""

from __future__ import annotations

import signal
from enum import IntEnum

__all__ = [
    "AccuracyGateError",
    "EXIT_CODE_MEANINGS",
    "EdgesegError",
    "ExitCode",
    "Interrupted",
    "MissingDependencyError",
]


class ExitCode(IntEnum):
    """Exit status of every ``edgeseg`` command."""

    OK = 0
    #: An unexpected exception: a bug in edgeseg (the traceback is printed).
    INTERNAL = 1
    #: A bad flag or option value, or bad input: missing/unreadable file, wrong data, missing package.
    USAGE = 2
    #: An accuracy gate failed (validation tolerance, INT8 accuracy guard); artifacts are kept.
    ACCURACY_GATE = 3
    #: Stopped by SIGINT (Ctrl-C): 128 + 2, the shell's convention.
    INTERRUPTED = 128 + signal.SIGINT
    #: Stopped by SIGTERM: 128 + 15.
    TERMINATED = 128 + signal.SIGTERM


#: One line per code, for ``--help`` (docs/exit-codes.md says the same at more length).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "internal error (a bug: please report the traceback)",
    ExitCode.USAGE: "usage or input error: a bad flag, value or file, a missing package",
    ExitCode.ACCURACY_GATE: "accuracy gate failed: an artifact misses its tolerance (report.json)",
    ExitCode.INTERRUPTED: "interrupted by SIGINT (Ctrl-C); the last line says what was kept",
    ExitCode.TERMINATED: "terminated by SIGTERM; the last line says what was kept",
}


class EdgesegError(Exception):
    """A user-facing error; the message names the bad file or value and says what to do."""

    exit_code: ExitCode = ExitCode.USAGE


class AccuracyGateError(EdgesegError):
    """A deployed artifact is not accurate enough: a validation tolerance or the INT8 guard failed.

    Its own exit code lets scripts tell "INT8 not accurate enough" from a bad flag.
    """

    exit_code = ExitCode.ACCURACY_GATE


class MissingDependencyError(EdgesegError):
    """An optional dependency is not installed.

    Args:
        package: import name of the missing module.
        extra: the ``pip install edgeseg[extra]`` extra that provides it, if any.
    """

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        hint = f"pip install 'edgeseg[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"Python package '{package}' is not installed{what}; install it with: {hint}")
        self.package = package


class Interrupted(Exception):
    """A command stopped on a signal; the message says what was kept and how to resume.

    Not an :class:`EdgesegError` (nothing the user gave was wrong), and not a ``KeyboardInterrupt``
    (which the CLI framework would turn into a bare status 130, whatever the signal).

    Args:
        signum: the signal that stopped the command (SIGINT or SIGTERM).
        kept: what is on disk now and how to continue, e.g. ``"runs/x/last.pt holds iteration 40;
            resume by adding --resume"``.
    """

    def __init__(self, signum: int, kept: str) -> None:
        super().__init__(kept)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"``..."""
        return signal.Signals(self.signum).name
