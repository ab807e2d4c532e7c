"""The triage queue: the active alerts in a clinician's scope, in attention order.

Attention order: red before amber before info; within a severity, alerts nobody
has acknowledged before acknowledged ones; then the oldest first (the longest
wait).  The scope's condition comes from :func:`server.access.alert_condition`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server.access import Scope, alert_condition

SEVERITIES = ("red", "amber", "info")

_QUEUE = """
SELECT a.id, a.category, a.severity, a.state, a.summary, a.rule_id,
       a.rule->>'title' AS rule_title, a.patient_id, p.display_name AS patient_name,
       p.nhs_number, p.status AS patient_status, a.team_id, t.name AS team_name,
       a.opened_at, a.updated_at, a.trigger_count, a.last_triggered_at, a.latest_reading,
       a.acknowledged_at, ack.display_name AS acknowledged_by_name, a.ack_expires_at,
       a.snoozed_until, a.next_escalation_at, a.escalation_level, a.inhibited_by
  FROM alert a
  LEFT JOIN patient p ON p.id = a.patient_id
  LEFT JOIN team t ON t.id = a.team_id
  LEFT JOIN clinician ack ON ack.id = a.acknowledged_by
 WHERE a.state IN ('open', 'acknowledged') AND {scope} {team}
 ORDER BY CASE a.severity WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END,
          (a.state = 'acknowledged'), a.opened_at, a.id
 LIMIT {limit}
"""


def queue(conn: psycopg.Connection[Any], scope: Scope, *, team: str | None = None,
          limit: int = 500) -> list[dict[str, Any]]:
    """Active alerts in scope, attention order.  ``team`` narrows to one team: alerts
    routed to it, or about a patient on its caseload."""
    team_filter: sql.Composable = sql.SQL("")
    if team is not None:
        team_filter = sql.SQL(
            " AND (a.team_id = {t} OR a.patient_id IN"
            " (SELECT patient_id FROM patient_team WHERE team_id = {t}))").format(
                t=sql.Literal(team))
    query = sql.SQL(_QUEUE).format(scope=alert_condition(scope), team=team_filter,
                                   limit=sql.Literal(limit))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Active alerts by severity (every severity present, zero or not)."""
    seen = Counter(r["severity"] for r in rows)
    return {s: seen.get(s, 0) for s in SEVERITIES}


def next_deadline(row: dict[str, Any]) -> tuple[str, datetime] | None:
    """What happens next to an active alert and when: ("escalates", t) while open,
    ("lease ends", t) while acknowledged; None when no timer runs."""
    if row["state"] == "open" and row.get("next_escalation_at"):
        return "escalates", row["next_escalation_at"]
    if row["state"] == "acknowledged" and row.get("ack_expires_at"):
        return "re-opens", row["ack_expires_at"]
    return None
