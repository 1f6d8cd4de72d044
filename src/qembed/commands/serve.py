"""CLI commands of this feature (filled in by its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add this feature's commands to the app or its groups."""
