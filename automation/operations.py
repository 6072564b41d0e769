"""Operator commands (issue 4): status, show, report, dlq, retry, cancel."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
