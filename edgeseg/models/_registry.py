"""The preset registry: ``register_model``, ``build_model``, ``list_models`` and typed config merging.

A preset is a small function ``preset(**kwargs) -> nn.Module`` that merges the caller's overrides
over its architecture arguments with :func:`make_config` and calls its family's builder. Overrides
arrive from Python, from ``--set key=value`` (YAML-typed, so lists instead of tuples) and from a
:class:`~edgeseg.checkpoint.ModelCard`, so :func:`make_config` checks keys and types and turns lists
into tuples before the config's own ``__post_init__`` checks the values.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from edgeseg.errors import EdgesegError

__all__ = ["build_model", "list_models", "make_config", "register_model"]

_PRESETS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])
C = TypeVar("C")


def register_model(fn: F) -> F:
    """Decorator adding a preset function to the registry under its own name.

    Raises:
        ValueError: a preset with that name is already registered (a programming error, as in
            torchvision's registry; timm only warns).
    """
    name = fn.__name__
    if name in _PRESETS:
        raise ValueError(f"model preset {name!r} is registered twice")
    _PRESETS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered presets, sorted.

    Args:
        pattern: optional shell-style filter, e.g. ``"dbmsnet_*"``.
    """
    names = sorted(_PRESETS)
    return fnmatch.filter(names, pattern) if pattern else names


def build_model(preset: str, num_classes: int | None = 19, **overrides: Any) -> nn.Module:
    """Build a zoo model from a preset name, with optional config overrides.

    ``None`` values are dropped, so unset CLI options never override a preset's defaults.

    Args:
        preset: registered name, e.g. ``"dbmsnet_r50vd_os16"`` (see :func:`list_models`).
        num_classes: number of output classes. Defaults to 19.
        **overrides: fields of the preset's config dataclass to change (``output_stride=8``).

    Returns:
        The model (randomly initialised, train mode) with its config in ``model.config``.

    Raises:
        EdgesegError: unknown preset, unknown override key (the message lists the valid keys) or
            a value of the wrong type / out of range.
    """
    if preset not in _PRESETS:
        raise EdgesegError(f"unknown model preset {preset!r}; available: {', '.join(list_models())}")
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return _PRESETS[preset](**kwargs)


def make_config(cls: type[C], model_args: dict[str, Any], overrides: dict[str, Any], preset: str) -> C:
    """Merge ``overrides`` over a preset's ``model_args`` into a config dataclass, checking keys and types.

    Args:
        cls: the family's config dataclass.
        model_args: the preset's architecture arguments.
        overrides: the caller's changes (lists are accepted where the field is a tuple).
        preset: preset name, for error messages.

    Raises:
        EdgesegError: a key that is not a field of ``cls`` (the message lists the valid keys) or a
            value that does not fit the field's type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise EdgesegError(
            f"unknown option(s) {', '.join(unknown)} for model preset {preset!r}; "
            f"valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    args = dict(model_args, **overrides)
    return cls(**{k: _coerce(v, hints[k], f"{preset}: {k}") for k, v in args.items()})


def _coerce(value: Any, hint: Any, what: str) -> Any:
    """Check ``value`` against a simple type hint; lists become tuples where a tuple is expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, what)
            except EdgesegError as e:
                errors.append(str(e))
        raise EdgesegError(errors[0] if len(errors) == 1 else f"{what}: {value!r} fits none of {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise EdgesegError(f"{what}: expected None, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise EdgesegError(f"{what}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], what) for v in value)
        if len(args) != len(value):
            raise EdgesegError(f"{what}: expected {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, what) for v, a in zip(value, args, strict=True))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise EdgesegError(f"{what}: expected a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise EdgesegError(f"{what}: expected an integer, got {value!r}")
    if hint in (bool, str):
        if isinstance(value, hint):
            return value
        raise EdgesegError(f"{what}: expected {hint.__name__}, got {value!r}")
    return value
