"""Helpers shared by the CLI commands: ``--set key=value`` parsing and the console."""

from __future__ import annotations

from typing import Any

import yaml
from rich.console import Console

from edgeseg.errors import EdgesegError

__all__ = ["console", "parse_sets"]

console = Console(stderr=True)


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["depth=50", "dilations=[1,3,5,7]"]`` into ``{"depth": 50, "dilations": [1, 3, 5, 7]}``.

    Values are read as YAML scalars/lists (safe loader), so numbers, booleans and lists need no
    quoting; the model config then checks each key and type.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgesegError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise EdgesegError(f"--set {key}: cannot parse value {value!r}") from None
    return out
