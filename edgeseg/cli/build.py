"""`edgeseg build` (placeholder until its issue lands)."""

import typer

from edgeseg.errors import EdgesegError


def register(app: typer.Typer) -> None:
    @app.command("build")
    def build() -> None:
        """Not implemented yet."""
        raise EdgesegError("'edgeseg build' is not implemented yet")
