"""Helpers shared by the CLI commands: the console, option parsing (`--set`, HxW, int lists) and the
model-card options of `edgeseg build` and `edgeseg export` (:func:`card_options`)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console, ConsoleDimensions

from edgeseg.errors import EXIT_CODE_MEANINGS, EdgesegError, Interrupted
from edgeseg.stopping import last_signal

__all__ = [
    "EXIT_CODES_HELP",
    "CARD_FLAGS",
    "card_options",
    "console",
    "interrupted",
    "parse_hw",
    "parse_int_list",
    "parse_sets",
]

#: Width of the console when it is not a terminal: wide enough that no table is ever cut.
UNBOUNDED_WIDTH = 100_000


class _Console(Console):
    """A console that is as wide as its output needs when it writes to a pipe or a file.

    rich sizes a console by the first of stdin/stdout/stderr that is a terminal, else 80 columns,
    and cuts (ellipsizes) table cells to fit. In CI logs, under ``| tee`` and in files a summary
    table must come out whole, so off a terminal the width is unbounded, unless ``COLUMNS`` sets one.
    Decided at each print, because the stream (``sys.stderr``) can be swapped at run time.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or "COLUMNS" in os.environ:
            return size
        return ConsoleDimensions(UNBOUNDED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console: Console = _Console(stderr=True)

#: The exit-code table for ``--help`` epilogs (``\b`` keeps click from re-wrapping the lines).
EXIT_CODES_HELP = "\b\nExit codes (docs/exit-codes.md):\n" + "\n".join(
    f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)

def interrupted(kept: str) -> Interrupted:
    """The :class:`~edgeseg.errors.Interrupted` to raise from a command's ``except KeyboardInterrupt``.

    Args:
        kept: what is on disk now and how to resume (one line).
    """
    return Interrupted(last_signal(), kept)


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


def _parse_rgb(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """``--mean`` / ``--std``: three numbers ``R,G,B`` (0-255 pixel units)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise EdgesegError(f"{flag} expects three numbers R,G,B in 0-255 pixel units (e.g. 0,0,0), "
                           f"got {text!r}")
    return values  # type: ignore[return-value]


#: The default of a command's ``card_flags`` parameter, which :func:`card_options` replaces by the
#: card options (never used as a value).
CARD_FLAGS: dict[str, Any] = {}

# The model card's options (docs/your-own-model.md, "The model card"), as (type, typer option): the
# one definition `build` and `export` both take, so the two commands cannot drift apart.
_CARD_OPTIONS: dict[str, tuple[type, Any]] = {
    "input_size": (str, typer.Option(
        None, "--input", help="Input HxW. (default: the target's, else what the graph fixes, else the "
                              "model card's)")),
    "card": (Path, typer.Option(
        None, "--card", help="card.yaml with the card keys (input, layout, channels, mean, std, "
                             "num_classes, classes); flags win over it.")),
    "layout": (str, typer.Option(
        None, "--layout", help="The network's input layout: nchw or nhwc. (default: what the graph fixes, "
                               "else nchw)")),
    "channels": (str, typer.Option(
        None, "--channels", help="The network's channel order: rgb or bgr. (default: rgb)")),
    "mean": (str, typer.Option(
        None, "--mean", help="Per-channel mean R,G,B in 0-255 pixel units: pixel = (value - mean) / std. "
                             "(default: the card's, ImageNet)")),
    "std": (str, typer.Option(
        None, "--std", help="Per-channel std R,G,B in 0-255 units; a network fed [0, 1] takes "
                            "255,255,255. (default: the card's, ImageNet)")),
    "num_classes": (int, typer.Option(
        None, "--num-classes", help="Class count (a preset is built with it). (default: the source's)")),
    "classes": (Path, typer.Option(None, "--classes", help="File of class names, one a line.")),
    "output_name": (str, typer.Option(
        None, "--output-name", help="Which output of a dict/tuple/multi-output model: a key, an index or an "
                                    "ONNX output name. (default: the only one, else out/logits)")),
}


def _parse_card_options(values: dict[str, Any]) -> dict[str, Any]:
    """The card options as :class:`~edgeseg.stages.BuildOptions` fields (the options check the rest)."""
    size = values["input_size"]
    return {**values, "input_size": parse_hw(size, "--input") if size else None,
            "mean": _parse_rgb(values["mean"], "--mean"), "std": _parse_rgb(values["std"], "--std")}


def card_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a typer command the model-card options in place of its ``card_flags`` parameter.

    The command declares one parameter ``card_flags: dict[str, Any]`` where the options should appear in
    ``--help``; it receives them parsed, as :class:`~edgeseg.stages.BuildOptions` keyword arguments
    (``input_size``, ``card``, ``layout``, ``channels``, ``mean``, ``std``, ``num_classes``, ``classes``,
    ``output_name``).
    """
    signature = inspect.signature(command)
    params = []
    for param in signature.parameters.values():
        if param.name != "card_flags":
            params.append(param)
            continue
        params += [inspect.Parameter(name, param.kind, default=info, annotation=kind)
                   for name, (kind, info) in _CARD_OPTIONS.items()]

    @functools.wraps(command)
    def with_card(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in _CARD_OPTIONS}
        command(**kwargs, card_flags=_parse_card_options(values))

    # typer reads the options from the signature and the annotations: both describe the expanded form.
    with_card.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_card.__annotations__ = {p.name: p.annotation for p in params if p.name not in _CARD_OPTIONS}
    with_card.__annotations__.update({name: kind for name, (kind, _) in _CARD_OPTIONS.items()})
    return with_card
