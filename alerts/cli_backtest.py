"""``homeward rules backtest`` and ``homeward bench alerts`` (filled in below)."""

from __future__ import annotations

import typer


def register_backtest(rules_app: typer.Typer, bench: typer.Typer) -> None:
    return None
