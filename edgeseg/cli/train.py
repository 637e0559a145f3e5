"""`edgeseg train` (placeholder until its issue lands)."""

import typer

from edgeseg.errors import EdgesegError


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train() -> None:
        """Not implemented yet."""
        raise EdgesegError("'edgeseg train' is not implemented yet")
