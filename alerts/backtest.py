"""Backtest: replay stored readings through a rule set and count the alerts it would raise.

``homeward rules backtest --rules FILE --from 2026-11-01 --to 2026-11-08`` answers
"what alert load would this rule change cause?" before it goes live: alerts
per team per day and per rule (by severity), as tables and CSV.

The replay uses the same evaluators, per-patient settings and routing tree as
the engine, with the clock set to each reading's time.  What it assumes:

- one active alert per (patient, rule): a repeat trigger is not a new alert;
  a worse one counts as a severity raise;
- an alert auto-resolves when its rule allows it; an alert that needs a nurse
  to resolve it is assumed resolved ``assume_resolved_after`` after it opened
  (default 24 h), so a later trigger counts again;
- rules that fire on the absence of readings (missed readings, hub offline,
  battery) need hub history that is not stored, and are not replayed;
- readings before ``--from`` (up to the longest rule window) feed the windows
  but raise nothing themselves.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import psycopg

from alerts.evaluators import evaluate
from alerts.model import Severity, WindowReading
from alerts.routing import AlertFacts, RoutingTree
from alerts.ruleset import RuleSet
from alerts.settings_store import load_settings, rules_for
from alerts.window import Window
from alerts.worker import TICK_KINDS

COLUMNS = ["opened_at", "day", "patient_id", "rule_id", "severity", "team_id", "route",
           "reading_id", "summary"]


@dataclass
class BacktestResult:
    alerts: pd.DataFrame           # one row per alert that would have opened
    raises: int                    # severity raises of an already active alert
    readings: int                  # readings replayed in [from, to)

    def per_team_per_day(self) -> pd.DataFrame:
        if self.alerts.empty:
            return pd.DataFrame()
        return (self.alerts.pivot_table(index="day", columns="team_id", values="rule_id",
                                        aggfunc="count", fill_value=0)
                .sort_index())

    def per_rule(self) -> pd.DataFrame:
        if self.alerts.empty:
            return pd.DataFrame()
        table = self.alerts.pivot_table(index="rule_id", columns="severity", values="day",
                                        aggfunc="count", fill_value=0)
        table["total"] = table.sum(axis=1)
        return table.sort_values("total", ascending=False)


def backtest(conn: psycopg.Connection[Any], ruleset: RuleSet, routing: RoutingTree, *,
             start: datetime, end: datetime,
             assume_resolved_after: timedelta = timedelta(hours=24)) -> BacktestResult:
    rules = [r for r in ruleset.rules if r.kind not in TICK_KINDS]
    lookback = max((r.window for r in rules), default=timedelta(days=1))
    history: dict[int, list[WindowReading]] = defaultdict(list)
    with conn.transaction(), conn.cursor(name="backtest") as cur:  # server-side: months
        cur.itersize = 20000
        cur.execute("SELECT patient_id, id, kind, taken_at, \"values\", flags FROM reading"
                    " WHERE patient_id IS NOT NULL AND taken_at >= %s AND taken_at < %s"
                    " ORDER BY patient_id, taken_at, id", (start - lookback, end))
        for pid, rid, kind, taken_at, values, flags in cur:
            history[pid].append(WindowReading(str(rid), kind, taken_at, values, tuple(flags)))
    pids = list(history)
    settings = load_settings(conn, pids)
    care: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pid, team, kind in conn.execute(
            "SELECT pt.patient_id, t.id, t.kind FROM patient_team pt JOIN team t"
            " ON t.id = pt.team_id WHERE pt.patient_id = ANY(%s) ORDER BY t.id", (pids,)):
        care[pid].append((team, kind))
    tz = ZoneInfo(routing.timezone)
    rows: list[dict[str, Any]] = []
    raises = 0
    replayed = 0
    for pid, readings in history.items():
        times = [r.taken_at for r in readings]
        active: dict[str, tuple[Severity, datetime, bool]] = {}
        for i, reading in enumerate(readings):
            if reading.taken_at < start:
                continue
            replayed += 1
            now = reading.taken_at
            for rule in rules_for(ruleset, settings.get(pid, []), now):
                if rule.kind in TICK_KINDS or reading.kind not in rule.reading_kinds:
                    continue
                lo = bisect.bisect_left(times, now - rule.window, 0, i + 1)
                finding = evaluate(rule, Window(tuple(readings[lo:i + 1])), now)
                current = active.get(rule.id)
                if current is not None and not current[2] and \
                        now - current[1] >= assume_resolved_after:
                    del active[rule.id]
                    current = None
                if finding is None:
                    continue
                if not finding.firing:
                    if current is not None and rule.auto_resolve:
                        del active[rule.id]
                    continue
                severity = finding.severity or rule.severity
                if current is not None:
                    if severity.rank > current[0].rank:
                        raises += 1
                        active[rule.id] = (severity, current[1], current[2])
                    continue
                active[rule.id] = (severity, now, rule.auto_resolve)
                dest = routing.route(AlertFacts(tuple(care[pid]), str(severity), now,
                                                dict(rule.labels), rule.id))[0]
                rows.append({"opened_at": now, "day": now.astimezone(tz).date().isoformat(),
                             "patient_id": pid, "rule_id": rule.id, "severity": str(severity),
                             "team_id": dest.team_id, "route": dest.route,
                             "reading_id": reading.id, "summary": finding.summary})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return BacktestResult(frame, raises, replayed)
