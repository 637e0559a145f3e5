"""A minimal protobuf text-format writer for Triton's ``config.pbtxt``.

Only what a model configuration needs: messages (dicts), repeated messages (lists of dicts),
repeated scalars (lists), strings, numbers, booleans and enum values (:class:`Enum`, written
unquoted). Keys keep their insertion order so the file reads like a hand-written one.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Enum", "dumps"]


class Enum(str):
    """An enum value (``TYPE_FP32``, ``KIND_GPU``): written without quotes."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted string with C-style escapes, as text format wants
    raise TypeError(f"cannot write {type(value).__name__} in text format")


def dumps(message: dict[str, Any], indent: int = 0) -> str:
    """Serialise a message (nested dicts/lists) to protobuf text format."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", dumps(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key} [")
            for i, item in enumerate(value):
                lines += [
                    f"{pad}  {{",
                    dumps(item, indent + 2),
                    f"{pad}  }}{',' if i < len(value) - 1 else ''}",
                ]
            lines.append(f"{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)
