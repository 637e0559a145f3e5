"""The ``edgeseg`` command line: one typer app; each command lives in its own module.

Command modules keep heavy imports (torch, onnx, tensorrt) inside the command body so that
``edgeseg --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from edgeseg.cli import bench, build, export, info, serve, train, validate, video
from edgeseg.errors import EdgesegError

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgeseg",
    help="Segmentation models from PyTorch to validated FP16/INT8 TensorRT engines.\n\n"
    "Typical flow: edgeseg train → edgeseg build --precision int8 → edgeseg validate / bench / video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (info, train, export, build, validate, bench, video, serve):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2; bugs keep their traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except EdgesegError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        # typer >= 0.24 vendors click (typer._click) instead of depending on it, so a usage error is
        # recognised by its shape (ClickException's show() and exit_code), not by importing click.
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        if isinstance(e, typer.Abort):
            sys.exit(130)
        raise
