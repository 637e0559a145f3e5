"""Exit codes: one table (edgeseg.errors.ExitCode) behind --help, docs/exit-codes.md and main()."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edgeseg.cli import main
from edgeseg.errors import EXIT_CODE_MEANINGS, ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"


def _exit_status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr().err


def test_every_code_is_listed_in_help_and_in_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    shown = capsys.readouterr().out
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert re.search(rf"^\s*{int(code)}\s+{re.escape(meaning[:40])}", shown, re.M), code
    rows = re.findall(r"^\| *(\d+) *\| *`(\w+)` *\|", DOC.read_text(), re.M)
    assert {(int(c), name) for c, name in rows} == {(int(c), c.name) for c in ExitCode}
    main(["validate", "--help"])  # every command's --help carries the same table
    assert "accuracy gate failed" in capsys.readouterr().out


def _failing_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.validate

    def validate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"passed": False, "candidates": [], "skipped": []}

    monkeypatch.setattr(edgeseg.validate, "validate", validate)
    monkeypatch.setattr(edgeseg.validate, "report_failures",
                        lambda report: ["model.int8.onnx (onnxrt): pixel agreement 97.10% < 99.50%"])


def test_a_failed_gate_and_a_bad_flag_exit_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing_validation(monkeypatch)
    status, err = _exit_status(capsys, "validate", "--build", str(tmp_path), "--data", "synthetic::val",
                               "--json")
    assert status == ExitCode.ACCURACY_GATE == 3
    assert err.strip().splitlines()[-1] == (
        "error: validation failed: model.int8.onnx (onnxrt): pixel agreement 97.10% < 99.50%")
    status, err = _exit_status(capsys, "validate", "--build", str(tmp_path), "--no-such-flag")
    assert status == ExitCode.USAGE == 2 and "--no-such-flag" in err


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_any_command_exits_with_its_own_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signum: int,
    status: int
) -> None:
    """Commands without their own handling still exit 128 + signal (typer reports 130 for both)."""
    import edgeseg.validate

    def validate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("the signal was not delivered")

    monkeypatch.setattr(edgeseg.validate, "validate", validate)
    before = signal.getsignal(signum)
    code, err = _exit_status(capsys, "validate", "--build", str(tmp_path), "--data", "synthetic::val")
    assert code == status and err.strip().splitlines()[-1] == f"interrupted by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) is before  # main() put the previous handler back
