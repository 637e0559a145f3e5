"""`edgeseg info` (placeholder until its issue lands)."""

import typer

from edgeseg.errors import EdgesegError


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info() -> None:
        """Not implemented yet."""
        raise EdgesegError("'edgeseg info' is not implemented yet")
