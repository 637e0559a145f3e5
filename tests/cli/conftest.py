"""Running ``python -m edgeseg.cli`` as a real process: signals, pipes, exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class Launched:
    """An ``edgeseg`` process with its stdout and stderr collected by reader threads (no pipe stalls).

    Its stdin, stdout and stderr are not terminals, as in CI, under ``| tee`` or in a file.
    """

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeseg.cli", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._drain, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll ``ready()`` until true; fail when the process ends first or the time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"edgeseg exited with {self.proc.returncode} before the signal:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {timeout} s:\n{self.stderr}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit status (and the last output)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"edgeseg did not exit within {timeout} s:\n{self.stderr}")
        for t in self._readers:
            t.join(5)
        return rc

    def stop(self, signum: int, timeout: float = 60.0) -> int:
        """Send ``signum`` and wait for the exit status."""
        self.proc.send_signal(signum)
        return self.finish(timeout)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    """Factory: start ``edgeseg ARGS...`` in ``tmp_path``; processes still running are killed after."""
    started: list[Launched] = []

    def start(*args: str) -> Launched:
        p = Launched(list(args), tmp_path)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
