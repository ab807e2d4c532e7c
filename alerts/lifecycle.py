"""The engine's side of the alert lifecycle: turn a finding into an alert change.

- A firing finding opens an alert, or updates the active one for the same
  (patient, rule): count + 1, latest reading, the readings list, and the
  severity raised when the new finding is worse (never lowered).  A raised
  severity re-opens an acknowledged alert: a worse reading deserves a fresh look.
- A clearing finding auto-resolves the active alert when the rule allows it.

All changes record an ``alert_event`` (and NOTIFY) in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from alerts.events import record_event
from alerts.model import Finding, Rule, Severity

#: How many of the readings that fired an alert it keeps (newest last).
MAX_READINGS_KEPT = 20


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert_id: int
    event: str            # opened / retriggered / severity_raised / auto_resolved
    severity: str
    team_id: str | None
    #: The ``alert_event`` row that recorded the change (keys the FHIR push).
    event_id: int | None = None


def _dumps(v: Any) -> str:
    return orjson.dumps(v, default=str).decode()


def apply_finding(conn: psycopg.Connection[Any], *, patient_id: int, rule: Rule,
                  finding: Finding, at: datetime, team_id: str | None,
                  route: dict[str, Any] | None = None,
                  inhibited_by: str | None = None,
                  none_active: bool = False) -> AlertChange | None:
    """Open/update/auto-resolve the (patient, rule) alert.  Call inside a transaction.

    ``none_active``: the caller saw no active alert of the pair in this transaction, so a
    firing finding tries the INSERT first (its ON CONFLICT still catches an alert opened
    meanwhile by another engine or the scheduler, which is then updated as usual)."""
    if not finding.firing:
        return _clear(conn, patient_id=patient_id, rule=rule, finding=finding, at=at)
    severity = finding.severity or rule.severity
    readings = [r.as_json() for r in finding.readings]
    latest = readings[-1] if readings else None
    if latest is None and finding.key is None:
        raise ValueError("a finding without readings needs a key")
    for attempt in range(3):
        row = None if none_active and attempt == 0 else conn.execute(
            "SELECT id, severity, state, readings, team_id, detail FROM alert"
            " WHERE patient_id = %s AND rule_id = %s AND state IN ('open', 'acknowledged')"
            " FOR UPDATE", (patient_id, rule.id)).fetchone()
        if row is not None:
            return _update(conn, row, rule=rule, finding=finding, severity=severity,
                           readings=readings, latest=latest, at=at, patient_id=patient_id,
                           inhibited_by=inhibited_by)
        inserted = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, rule, severity, state, summary, labels,"
            " team_id, opened_at, updated_at, last_triggered_at, latest_reading_id,"
            " latest_reading, readings, detail, route, inhibited_by, escalation_policy)"
            " VALUES (%s, %s, %s::jsonb, %s, 'open', %s, %s::jsonb, %s, %s, %s, %s, %s,"
            " %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s)"
            " ON CONFLICT (patient_id, rule_id) WHERE state IN ('open', 'acknowledged')"
            " DO NOTHING RETURNING id",
            (patient_id, rule.id, _dumps(rule.as_json()), str(severity), finding.summary,
             _dumps(dict(rule.labels)), team_id, at, at, at,
             latest["id"] if latest else None, _dumps(latest), _dumps(readings),
             _dumps(_detail(finding, inhibited_by)),
             _dumps(route) if route is not None else None, inhibited_by,
             (route or {}).get("escalation"))).fetchone()
        if inserted is None:
            continue  # another worker opened it a moment ago: update that one
        alert_id = int(inserted[0])
        event_id = record_event(
            conn, alert_id, "opened", at=at,
            detail={"summary": finding.summary, "severity": str(severity),
                    "team_id": team_id, "inhibited_by": inhibited_by,
                    "reading_id": latest["id"] if latest else None},
            state="open", severity=str(severity), team_id=team_id, patient_id=patient_id)
        return AlertChange(alert_id, "opened", str(severity), team_id, event_id)
    raise RuntimeError(f"could not open or update alert for patient {patient_id}, rule {rule.id}")


def _detail(finding: Finding, inhibited_by: str | None) -> dict[str, Any]:
    out = dict(finding.detail)
    if finding.key is not None:
        out["key"] = finding.key
    if inhibited_by:
        out["inhibited_by"] = inhibited_by
    return out


def _update(conn: psycopg.Connection[Any], row: tuple[Any, ...], *, rule: Rule,
            finding: Finding, severity: Severity, readings: list[dict[str, Any]],
            latest: dict[str, Any] | None, at: datetime, patient_id: int,
            inhibited_by: str | None) -> AlertChange | None:
    alert_id, old_sev, state, kept, team_id, old_detail = row
    if finding.key is not None and (old_detail or {}).get("key") == finding.key:
        return None  # the same occurrence seen again by the scheduler: nothing new
    known = {r["id"] for r in kept}
    merged = (kept + [r for r in readings if r["id"] not in known])[-MAX_READINGS_KEPT:]
    raised = Severity(old_sev).rank < severity.rank
    new_sev = str(severity) if raised else old_sev
    new_state = "open" if raised else state
    conn.execute(
        "UPDATE alert SET trigger_count = trigger_count + 1, last_triggered_at = %s,"
        " updated_at = %s, latest_reading_id = %s, latest_reading = %s::jsonb,"
        " readings = %s::jsonb, summary = %s, detail = %s::jsonb, severity = %s, state = %s,"
        " acknowledged_at = CASE WHEN %s THEN NULL ELSE acknowledged_at END,"
        " acknowledged_by = CASE WHEN %s THEN NULL ELSE acknowledged_by END,"
        " ack_expires_at = CASE WHEN %s THEN NULL ELSE ack_expires_at END,"
        " inhibited_by = %s"
        " WHERE id = %s",
        (at, at, latest["id"] if latest else None, _dumps(latest), _dumps(merged),
         finding.summary, _dumps(_detail(finding, inhibited_by)), new_sev, new_state,
         raised and state == "acknowledged", raised and state == "acknowledged",
         raised and state == "acknowledged", inhibited_by, alert_id))
    event = "severity_raised" if raised else "retriggered"
    event_id = record_event(
        conn, alert_id, event, at=at,
        detail={"summary": finding.summary, "from": old_sev, "to": new_sev,
                "reading_id": latest["id"] if latest else None},
        state=new_state, severity=new_sev, team_id=team_id, patient_id=patient_id)
    return AlertChange(alert_id, event, new_sev, team_id, event_id)


def _clear(conn: psycopg.Connection[Any], *, patient_id: int, rule: Rule, finding: Finding,
           at: datetime) -> AlertChange | None:
    if not rule.auto_resolve:
        return None
    row = conn.execute(
        "UPDATE alert SET state = 'auto_resolved', resolved_at = %s, outcome = 'auto_resolved',"
        " updated_at = %s, next_escalation_at = NULL"
        " WHERE patient_id = %s AND rule_id = %s AND state IN ('open', 'acknowledged')"
        " RETURNING id, severity, team_id", (at, at, patient_id, rule.id)).fetchone()
    if row is None:
        return None
    alert_id, severity, team_id = row
    event_id = record_event(
        conn, alert_id, "auto_resolved", at=at,
        detail={"summary": finding.summary, "reading_ids": [r.id for r in finding.readings]},
        state="auto_resolved", severity=severity, team_id=team_id, patient_id=patient_id)
    return AlertChange(alert_id, "auto_resolved", severity, team_id, event_id)
