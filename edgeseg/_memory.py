"""This process's peak resident memory, resettable so that one step can be measured on its own."""

from __future__ import annotations

import contextlib
import resource

__all__ = ["peak_rss_mb", "reset_peak_rss"]


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs`` code 5).

    Returns:
        Whether it worked; when not, :func:`peak_rss_mb` is the peak of the whole process so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``getrusage``)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    # ru_maxrss is KiB on Linux (bytes on macOS; edgeseg targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
