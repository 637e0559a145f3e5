"""Summary tables come out whole when stderr is a pipe or a file (CI logs, ``| tee``)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from edgeseg.cli._common import UNBOUNDED_WIDTH, _Console
from edgeseg.stages.targets import list_targets, load_target

from .conftest import Launched


def test_a_wide_table_is_not_cut_at_80_columns_in_a_pipe(launch: Callable[..., Launched]) -> None:
    p = launch("build", "--list-targets")
    assert p.finish() == 0, p.stderr
    rows = [line for line in p.stderr.splitlines() if line.startswith("│")]
    assert "…" not in p.stderr
    for name in list_targets():
        profile = load_target(name)
        row = next(r for r in rows if f"│ {name} " in r)
        # Each cell whole, on one line: the description is longer than an 80-column table allows it.
        assert f"│ {profile.description} " in row
    assert max(len(r) for r in rows) > 80  # the test would prove nothing with a narrow table


def test_off_a_terminal_the_width_is_unbounded_unless_columns_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert _Console(file=io.StringIO()).width == UNBOUNDED_WIDTH
    monkeypatch.setenv("COLUMNS", "120")  # an explicit width is the user's choice
    assert _Console(file=io.StringIO()).width == 120
