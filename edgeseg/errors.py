"""The one exception type users see.

Anything raised as :class:`EdgesegError` is a problem with the user's input or environment (a bad
file, a missing optional dependency, a value out of range). The CLI prints its message on one
line and exits with status 2; any other exception is a bug in edgeseg and keeps its traceback.
"""

__all__ = ["EdgesegError", "MissingDependencyError"]


class EdgesegError(Exception):
    """A user-facing error; the message names the bad file or value and says what to do."""


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
