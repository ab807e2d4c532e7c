"""``homeward rules backtest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register_backtest(rules_app: typer.Typer) -> None:
    @rules_app.command("backtest")
    def backtest_cmd(
        date_from: Annotated[str, typer.Option("--from", help="start (ISO date or time, UTC)")],
        date_to: Annotated[str, typer.Option("--to", help="end, exclusive (ISO date or time)")],
        rules: Annotated[Path | None, typer.Option(help="rule file (default: shipped)")] = None,
        routes: Annotated[Path | None, typer.Option(help="routing file")] = None,
        csv: Annotated[Path | None, typer.Option(
            help="write CSVs here: <csv> (alerts) and <csv stem>-per-team-day.csv, "
                 "-per-rule.csv")] = None,
        database_url: Annotated[str | None, typer.Option(
            "--database-url", envvar="HOMEWARD_DATABASE_URL")] = None,
        assume_resolved_hours: Annotated[float, typer.Option(
            help="alerts that need a nurse count as resolved after this many hours")] = 24.0,
    ) -> None:
        """Replay stored readings through a rule set: alerts per team per day and per rule."""
        from datetime import UTC, datetime, timedelta

        import psycopg

        from alerts.backtest import backtest
        from alerts.errors import RuleError
        from alerts.routing import load_routing
        from alerts.ruleset import load_ruleset
        from homeward.settings import get_settings

        def when(text: str) -> datetime:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return at if at.tzinfo else at.replace(tzinfo=UTC)

        try:
            ruleset, tree = load_ruleset(rules), load_routing(routes)
        except RuleError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        start, end = when(date_from), when(date_to)
        with psycopg.connect(database_url or get_settings().database_url) as conn:
            result = backtest(conn, ruleset, tree, start=start, end=end,
                              assume_resolved_after=timedelta(hours=assume_resolved_hours))
        typer.echo(f"{result.readings} readings replayed from {start.isoformat()} to "
                   f"{end.isoformat()} with {ruleset.source}: {len(result.alerts)} alerts, "
                   f"{result.raises} severity raises")
        per_team, per_rule = result.per_team_per_day(), result.per_rule()
        typer.echo("\nAlerts per team per day:")
        typer.echo(per_team.to_string() if not per_team.empty else "(none)")
        typer.echo("\nAlerts per rule:")
        typer.echo(per_rule.to_string() if not per_rule.empty else "(none)")
        if csv is not None:
            result.alerts.to_csv(csv, index=False)
            per_team.to_csv(csv.with_name(f"{csv.stem}-per-team-day.csv"))
            per_rule.to_csv(csv.with_name(f"{csv.stem}-per-rule.csv"))
            typer.echo(f"\nCSV: {csv}, {csv.stem}-per-team-day.csv, {csv.stem}-per-rule.csv")

