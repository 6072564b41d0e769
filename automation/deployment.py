"""Deploy commands (issue 5): deploy and package."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
