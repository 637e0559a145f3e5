"""Helpers shared by the CLI commands: the console and option parsing (`--set`, HxW, int lists)."""

from __future__ import annotations

from typing import Any

import yaml
from rich.console import Console

from edgeseg.errors import EdgesegError

__all__ = ["console", "parse_hw", "parse_int_list", "parse_sets"]

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


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """Parse ``"HxW"`` or ``"N"`` (square) into ``(H, W)``.

    Raises:
        EdgesegError: not two positive integers; the message names the option ``what``.
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise EdgesegError(f"{what} expects HxW (e.g. 512x1024) or one size, got {text!r}")
    return hw[0], hw[1]


def parse_int_list(text: str, what: str) -> list[int]:
    """``"1,4"`` → ``[1, 4]`` (positive ints), with an error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgesegError(f"{what} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise EdgesegError(f"{what} expects positive integers, got {text!r}")
    return values
