"""Stop signals are raised only where no native code is unwinding (edgeseg.stopping)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeseg.stopping import handle_stop_signals, last_signal, shielded


@pytest.fixture
def python_handlers() -> Iterator[None]:
    """Python's own SIGINT/SIGTERM handling around the test, whatever the test runner set."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _wait_for_interrupt() -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    pytest.fail("no KeyboardInterrupt within 5 s")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_plain_code_stops_at_once(python_handlers: None, signum: int) -> None:
    with handle_stop_signals():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            _wait_for_interrupt()
        assert last_signal() == signum


def test_a_signal_in_a_shielded_block_waits_for_its_end(python_handlers: None) -> None:
    steps: list[str] = []
    with handle_stop_signals():
        with pytest.raises(KeyboardInterrupt):
            with shielded():
                with shielded():  # nested: only the outermost end raises
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)  # nothing is raised in here
                    steps.append("inner done")
                steps.append("outer done")
            steps.append("after the block")
        assert last_signal() == signal.SIGTERM
    assert steps == ["inner done", "outer done"]
    assert last_signal() == signal.SIGINT  # outside the block: nothing of it is reported


def test_the_stop_outranks_an_error_raised_by_the_shielded_block(python_handlers: None) -> None:
    with handle_stop_signals(), pytest.raises(KeyboardInterrupt) as caught, shielded():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("the block's own failure")
    assert isinstance(caught.value.__context__, ValueError)


def test_a_signal_during_an_import_waits_until_the_module_is_complete(
    python_handlers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module whose initialisation receives the signal half-way, as lief's (nanobind) did.
    (tmp_path / "slow_init_module.py").write_text(textwrap.dedent("""
        import os, signal, time
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        COMPLETE = True
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_init_module", raising=False)
    with handle_stop_signals(), pytest.raises(KeyboardInterrupt):
        import slow_init_module  # noqa: F401

        _wait_for_interrupt()  # raised by the retry timer, once the import has returned
    assert sys.modules["slow_init_module"].COMPLETE


def test_a_shielded_block_outside_the_cli_hands_the_signal_to_the_previous_handler(
    python_handlers: None,
) -> None:
    steps: list[str] = []
    # Raised by Python's default SIGINT handler, once the block is done.
    with pytest.raises(KeyboardInterrupt), shielded():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        steps.append("block done")
    assert steps == ["block done"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


_HARD_STOP = """
import os, signal, sys, time
from edgeseg._io import atomic_write
from edgeseg.stopping import handle_stop_signals, shielded
with handle_stop_signals():
    with shielded(), atomic_write(sys.argv[1]) as f:
        f.write(b"half")
        os.kill(os.getpid(), signal.SIGTERM)  # waits for the block's end ...
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)  # ... unless a second one comes
        time.sleep(5)
print("not reached")
"""


def test_a_second_signal_stops_at_once_and_deletes_the_file_being_written(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    done = subprocess.run([sys.executable, "-c", _HARD_STOP, str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 143, done.stderr
    assert "not reached" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "SIGTERM: stopping once the current step is done (send it again to stop at once)"
    assert lines[-1].startswith("interrupted by SIGTERM again: stopped at once")
    assert list(tmp_path.iterdir()) == []  # neither the target nor atomic_write's temporary file


_LIEF = """
import os, signal, sys
from edgeseg.stopping import handle_stop_signals

seen = []
def on_import(event, args):
    # The first import after lief._lief's starts is one that its native (nanobind) initialisation
    # makes: the signal is handled in Python code that C++ called.
    if event == "import":
        if seen == ["lief._lief"]:
            os.kill(os.getpid(), signal.SIGTERM)
        if args[0] == "lief._lief" or seen:
            seen.append(args[0])

sys.addaudithook(on_import)
with handle_stop_signals():
    try:
        import lief
        import time
        time.sleep(5)
    except KeyboardInterrupt:
        sys.exit(143 if "lief" in sys.modules and hasattr(sys.modules["lief"], "parse") else 1)
"""


def test_a_signal_as_a_nanobind_module_is_imported_waits_for_the_import() -> None:
    """The CI abort: SIGTERM while Model Optimizer imported lief ended in std::terminate (exit -6).

    Raised at once, the KeyboardInterrupt is swallowed by nanobind here (exit 0: the stop is lost).
    """
    done = subprocess.run([sys.executable, "-c", _LIEF], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done.stderr[-3000:]


def test_a_signal_held_by_an_import_is_raised_at_the_end_of_a_shielded_block_that_follows(
    python_handlers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "signalling_module.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "signalling_module", raising=False)
    steps: list[str] = []
    with handle_stop_signals(), pytest.raises(KeyboardInterrupt):
        import signalling_module  # noqa: F401

        with shielded():  # entered before the retry timer's first tick (50 ms)
            time.sleep(0.3)
            steps.append("shielded step done")
    assert steps == ["shielded step done"]


def test_the_retry_timer_gives_sigalrm_back(python_handlers: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller's own SIGALRM handler and timer survive a signal held back by an import."""
    (tmp_path / "signalling_module2.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "signalling_module2", raising=False)
    alarms: list[int] = []

    def own(signum: int, frame: object) -> None:
        alarms.append(signum)

    previous = signal.signal(signal.SIGALRM, own)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with handle_stop_signals(), pytest.raises(KeyboardInterrupt):
            import signalling_module2  # noqa: F401

            _wait_for_interrupt()
        assert signal.getsignal(signal.SIGALRM) is own
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 1.0  # the caller's timer runs on
        deadline = time.monotonic() + 3
        while not alarms and time.monotonic() < deadline:
            time.sleep(0.01)
        assert alarms == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_shielded_block_in_library_use_leaves_sigalrm_alone(python_handlers: None) -> None:
    previous = signal.getsignal(signal.SIGALRM)
    with shielded():
        assert signal.getsignal(signal.SIGALRM) is previous
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is previous


def test_a_hard_stop_with_a_closed_stderr_still_stops_and_cleans_up(tmp_path: Path) -> None:
    """`edgeseg build ... | tee log`: Ctrl-C kills tee too, so the lines about the stop cannot be written."""
    target = tmp_path / "model.onnx"
    read, write = os.pipe()
    os.close(read)  # every write to stderr now fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-c", _HARD_STOP, str(target)], stdout=subprocess.PIPE,
                              stderr=write, timeout=60)
    finally:
        os.close(write)
    assert done.returncode == 143
    assert list(tmp_path.iterdir()) == []
