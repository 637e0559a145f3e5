"""Every command's ``--help``: its examples use options the command has, and its verbatim blocks
fit an 80-column terminal.

Click re-wraps prose paragraphs to the terminal, but not a block marked ``\\b`` (examples, stage
lists): a line longer than the terminal breaks mid-word there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from edgeseg.cli import app

WIDTH = 80 - 2  # rich pads the help panel by one column on each side


def _commands() -> Iterator[tuple[str, Any]]:
    yield from typer.main.get_command(app).commands.items()  # type: ignore[attr-defined]


def _verbatim_blocks(text: str) -> list[list[str]]:
    return [block.splitlines()[1:] for block in text.split("\n\n") if block.startswith("\b")]


def _examples(text: str) -> list[str]:
    """The ``edgeseg ...`` lines, with their ``\\`` continuation lines joined."""
    lines, joined = text.replace("\\\n", " ").splitlines(), []
    for line in lines:
        if line.strip().startswith("edgeseg "):
            joined.append(line.split("#")[0])
    return joined


@pytest.mark.parametrize("name, command", list(_commands()), ids=[n for n, _ in _commands()])
def test_help_examples_use_real_options_and_fit_80_columns(name: str, command: Any) -> None:
    text = (command.help or "") + "\n\n" + (command.epilog or "")
    options = {opt for p in command.params
               for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
    for example in _examples(text):
        assert example.split()[1] == name, example
        unknown = [t for t in re.findall(r"(?<!\S)(--?[a-z][\w-]*)", example) if t not in options]
        assert not unknown, f"{example!r} uses {unknown}, not options of `edgeseg {name}`"
    for block in _verbatim_blocks(text):
        too_long = [line for line in block if len(line) > WIDTH]
        assert not too_long, f"`edgeseg {name} --help` lines over {WIDTH} columns: {too_long}"
