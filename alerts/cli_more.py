"""More alert commands (route-test, backtest, bench), kept apart to keep cli.py short."""

from __future__ import annotations

import typer


def register_more(app: typer.Typer, rules_app: typer.Typer, bench: typer.Typer) -> None:
    return None
