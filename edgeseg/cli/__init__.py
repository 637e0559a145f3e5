"""The ``edgeseg`` command line: one typer app; each command lives in its own module.

Command modules keep heavy imports (torch, onnx, tensorrt) inside the command body so that
``edgeseg --help`` stays fast.
"""

from __future__ import annotations

import signal
import sys

import typer

from edgeseg.cli import bench, build, export, info, serve, train, validate, video
from edgeseg.cli._common import EXIT_CODES_HELP
from edgeseg.errors import EdgesegError, ExitCode, Interrupted
from edgeseg.stopping import handle_stop_signals, last_signal

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgeseg",
    help="Segmentation models from PyTorch to validated FP16/INT8 TensorRT engines.\n\n"
    "Typical flow: edgeseg train → edgeseg build --precision int8 → edgeseg validate / bench / video.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (info, train, export, build, validate, bench, video, serve):
    module.register(app)


def _stopped(signum: int, kept: str = "") -> None:
    name = signal.Signals(signum).name
    print(f"interrupted by {name}" + (f": {kept}" if kept else ""), file=sys.stderr)
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the exit codes are :class:`edgeseg.errors.ExitCode` (see ``--help``).

    User errors print one line (``error: ...``); a signal prints one line saying what was kept;
    bugs keep their traceback.

    Args:
        argv: the arguments. Defaults to the process's own command line.
    """
    try:
        _main(argv)
    except SystemExit as e:
        if argv is None and e.code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            # The last line is out, but the interpreter's teardown takes a second more: a signal then
            # would end the process by the raw signal instead of the status just announced.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
        raise


def _main(argv: list[str] | None) -> None:
    with handle_stop_signals():
        try:
            status = app(args=argv, standalone_mode=False)
        except Interrupted as e:
            _stopped(e.signum, str(e))
        except EdgesegError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            _stopped(last_signal())
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
                _stopped(last_signal())
            raise
        # In non-standalone mode typer *returns* exit codes: a command's typer.Exit(n), and 130 for a
        # KeyboardInterrupt no command turned into an Interrupted (the signal may have been SIGTERM:
        # last_signal() knows only inside the block).
        if status == ExitCode.INTERRUPTED:
            _stopped(last_signal())
    if isinstance(status, int) and status:
        sys.exit(status)
