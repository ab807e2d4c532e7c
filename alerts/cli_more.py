"""More alert commands: ``rules route-test``, ``rules backtest``."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated

import typer


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if at.tzinfo is None:
        from zoneinfo import ZoneInfo

        at = at.replace(tzinfo=ZoneInfo("Europe/London"))  # a wall-clock time in London
    return at


def register_more(app: typer.Typer, rules_app: typer.Typer) -> None:
    @rules_app.command("route-test")
    def route_test(
        care_team: Annotated[list[str], typer.Option(
            "--care-team", help="the patient's care team as id:kind (repeat for several)")],
        severity: Annotated[str, typer.Option(help="info, amber or red")] = "amber",
        rule: Annotated[str | None, typer.Option(
            help="rule id; its labels come from --rules unless --label is given")] = None,
        label: Annotated[list[str] | None, typer.Option(
            "--label", help="rule label name=value (repeat)")] = None,
        category: Annotated[str, typer.Option(help="clinical or system")] = "clinical",
        at: Annotated[str | None, typer.Option(
            help="when (ISO 8601; without a zone: London wall-clock time); default now")] = None,
        routes: Annotated[Path | None, typer.Option(help="routing file")] = None,
        rules: Annotated[Path | None, typer.Option(help="rule file")] = None,
    ) -> None:
        """Where would this alert go?  Prints each matching route, its team and escalation."""
        from alerts.errors import RuleError
        from alerts.routing import AlertFacts, load_routing
        from alerts.ruleset import load_ruleset

        try:
            tree = load_routing(routes)
            labels: dict[str, str] = {}
            if rule is not None and not label:
                found = load_ruleset(rules).by_id().get(rule)
                if found is None:
                    raise typer.BadParameter(f"no rule {rule!r} in the rule file")
                labels = dict(found.labels)
            for item in label or []:
                name, _, value = item.partition("=")
                labels[name] = value
            teams = []
            for ct in care_team:
                team, _, kind = ct.partition(":")
                teams.append((team, kind))
            when = _parse_at(at)
            dests = tree.route(AlertFacts(tuple(teams), severity, when, labels, rule or "",
                                          category))
        except RuleError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"at {when.isoformat()} ({when.astimezone(tree_tz(tree.timezone)):%a %H:%M}"
                   f" {tree.timezone}); schedules: "
                   + ", ".join(n for n in tree.schedules if tree.in_schedule(n, when)))
        for d in dests:
            policy = tree.policies[d.escalation]
            levels = "; ".join(f"+{lv.after} {lv.notify}"
                               + (f"(rota {lv.rota_level})" if lv.notify == "on_duty" else "")
                               for lv in policy.levels)
            typer.echo(f"{d.route}: team={d.team_id} channels={','.join(d.channels)} "
                       f"escalation={d.escalation} [{levels}] ack_lease={policy.ack_lease}")

    from alerts.cli_backtest import register_backtest

    register_backtest(rules_app)


def tree_tz(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
