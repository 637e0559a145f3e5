"""This process's resident memory: its peak so far, and the peak while one step runs."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from types import TracebackType

__all__ = ["PeakRss", "peak_rss_mb", "rss_mb"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far in MiB (``VmHWM``, else ``getrusage``)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    # ru_maxrss is KiB on Linux (bytes on macOS; edgeseg targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float | None:
    """Resident set size now, in MiB (None where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


class PeakRss:
    """Peak resident memory while a block runs, sampled by a background thread.

    The kernel's own high-water mark is never reset: ``VmHWM`` and ``getrusage`` (what
    ``/usr/bin/time -v`` prints as "Maximum resident set size") stay the whole process's true peak,
    so a measurement from outside the process is not skewed by this one. A spike shorter than
    ``interval`` can be missed; where ``/proc`` is missing the process peak stands in
    (:attr:`scope` says which).

    Args:
        interval: seconds between samples. Defaults to 0.01.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scope = "step" if rss_mb() is not None else "process"

    def _sample(self) -> None:
        now = rss_mb()
        if now is not None and now > self._peak:
            self._peak = now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @property
    def peak_mib(self) -> float:
        """The peak so far (MiB)."""
        if self.scope == "process":
            return peak_rss_mb()
        self._sample()
        return self._peak

    def __enter__(self) -> PeakRss:
        self._sample()
        if self.scope == "step":
            self._thread = threading.Thread(target=self._run, name="edgeseg-peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
