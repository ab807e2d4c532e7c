"""The notification layer: routing, escalation, leases, snoozes, reminders, fallbacks.

It reads and writes the same alert rows as the clinical layer (alerts/lifecycle.py,
alerts/store.py), and turns alert events into rows of the durable notification
outbox (alerts/outbox.py delivers them).  Every step runs inside the caller's
transaction, together with the alert event that caused it, so a crash either
loses both or neither: a notification is never lost, and its idempotency key
(alert, event, channel, target) is stable across retries.

Timers live in the alert row (``escalation_level``, ``level_entered_at``,
``next_escalation_at``, ``ack_expires_at``, ``snoozed_until``) and ``tick``
acts on those that are due, so a restart resumes every escalation where it was.

Escalation: level 0 is notified when the alert opens (or re-opens); each
later level is due ``after`` its predecessor's ``after`` has passed (measured
from when the current level was entered); at the last level a reminder repeats
every ``reminder`` until someone acknowledges.  An acknowledgement stops it;
when the acknowledgement's lease expires the alert re-opens at level 0.

Nobody on duty at a level (a rota gap): the alert moves to the team's fallback
(table team_escalation, else the routing file's ``default_fallback_team``) and a
system alert names the gap.  Never dropped: with no fallback at all the alert
stays on its team's dashboard and the system alert says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts import fhir_push
from alerts.events import record_event
from alerts.lifecycle import AlertChange
from alerts.model import EvaluationFailure, Rule
from alerts.routing import AlertFacts, EscalationPolicy, Level, RoutingTree

log = logging.getLogger(__name__)

#: Events that start (or restart) notification at level 0.
START_EVENTS = frozenset({"opened", "severity_raised", "reopened"})


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str
    target: str
    team_id: str | None
    clinician_id: int | None = None


def _dumps(v: Any) -> str:
    return orjson.dumps(v, default=str).decode()


@dataclass
class Notifier:
    routing: RoutingTree
    #: Called with the team that held each alert escalated by :meth:`tick`, once the
    #: tick's transaction has committed (alerts.metrics counts them).
    on_escalated: Callable[[str | None], None] | None = None
    #: Where alert changes are pushed as FHIR Bundles (alerts/fhir_push.py); default
    #: ``HOMEWARD_FHIR_PUSH_URL``, None: no push.
    fhir_push_url: str | None = field(default_factory=fhir_push.push_url)

    # -- routing ------------------------------------------------------------------
    def care_teams(self, conn: psycopg.Connection[Any],
                   patient_id: int | None) -> tuple[tuple[str, str], ...]:
        if patient_id is None:
            return ()
        rows = conn.execute("SELECT t.id, t.kind FROM patient_team pt JOIN team t"
                            " ON t.id = pt.team_id WHERE pt.patient_id = %s ORDER BY t.id",
                            (patient_id,)).fetchall()
        return tuple((r[0], r[1]) for r in rows)

    def route(self, conn: psycopg.Connection[Any], patient_id: int | None, rule: Rule | None,
              severity: str, at: datetime, *, category: str = "clinical",
              rule_id: str = "", labels: dict[str, str] | None = None,
              ) -> tuple[str | None, dict[str, Any]]:
        """(team id, route detail) for an alert; the detail is stored on the alert."""
        care = self.care_teams(conn, patient_id)
        facts = AlertFacts(care, severity, at, dict(rule.labels) if rule else (labels or {}),
                           rule.id if rule else rule_id, category)
        dests = self.routing.route(facts)
        primary = dests[0]
        team_id = primary.team_id
        if team_id is not None and team_id not in {t for t, _ in care} and conn.execute(
                "SELECT 1 FROM team WHERE id = %s", (team_id,)).fetchone() is None:
            log.error("route %s names unknown team %s", primary.route, team_id)
            team_id = care[0][0] if care else None
        escalation = self.own_policy(conn, team_id, primary.escalation)
        policy = self.routing.policies[escalation]
        return team_id, {"route": primary.route, "channels": list(primary.channels),
                         "escalation": escalation,
                         "ack_lease_seconds": policy.ack_lease.total_seconds(),
                         "also": [d.as_json() for d in dests[1:]]}

    def own_policy(self, conn: psycopg.Connection[Any], team_id: str | None,
                    escalation: str) -> str:
        """The team's own escalation policy, set by an admin, over the route's."""
        if team_id is not None:
            own = conn.execute("SELECT escalation_policy FROM team_escalation"
                               " WHERE team_id = %s", (team_id,)).fetchone()
            if own is not None and own[0] in self.routing.policies:
                return str(own[0])
        return escalation

    def router(self, conn: psycopg.Connection[Any], patient_id: int, rule: Rule,
               severity: str, at: datetime) -> tuple[str | None, dict[str, Any] | None]:
        return self.route(conn, patient_id, rule, severity, at)

    # -- reacting to alert changes -------------------------------------------------
    def on_change(self, conn: psycopg.Connection[Any], change: AlertChange,
                  now: datetime) -> None:
        """Start notification for opened / worse alerts, and push the changes a FHIR
        server records (fhir_push.PUSH_EVENTS).  Call inside the change's transaction."""
        self._start(conn, change, now)
        if change.event_id is not None:  # after _start: the alert as routed
            fhir_push.enqueue(conn, change.alert_id, change.event, change.event_id, at=now,
                              url=self.fhir_push_url)

    def _start(self, conn: psycopg.Connection[Any], change: AlertChange, now: datetime) -> None:
        if change.event not in START_EVENTS:
            if change.event == "auto_resolved":
                conn.execute("UPDATE alert SET next_escalation_at = NULL WHERE id = %s",
                             (change.alert_id,))
            return
        alert = self.load(conn, change.alert_id)
        if alert is None or alert["inhibited_by"]:
            return
        if change.event == "severity_raised":
            # a worse alert may belong elsewhere (red at night goes to the urgent route)
            team_id, route = self.route(conn, alert["patient_id"], None, alert["severity"], now,
                                        category=alert["category"], rule_id=alert["rule_id"],
                                        labels=alert["labels"])
            conn.execute("UPDATE alert SET team_id = %s, route = %s::jsonb,"
                         " escalation_policy = %s WHERE id = %s",
                         (team_id, _dumps(route), route["escalation"], alert["id"]))
            alert = self.load(conn, change.alert_id)
            assert alert is not None
        if alert["snoozed_until"] is not None and alert["snoozed_until"] > now:
            return
        self.enter_level(conn, alert, 0, reason=change.event, now=now)

    # -- the scheduler tick ------------------------------------------------------------
    def tick(self, conn: psycopg.Connection[Any], now: datetime, *, limit: int = 200) -> int:
        """Leases that expired, snoozes that ended, escalations and reminders that are due."""
        done = 0
        escalated: list[str | None] = []
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            for alert in cur.execute(
                    f"SELECT {_ALERT_COLS} FROM alert WHERE state = 'acknowledged'"
                    " AND ack_expires_at <= %s ORDER BY ack_expires_at"
                    " FOR UPDATE SKIP LOCKED LIMIT %s", (now, limit)).fetchall():
                conn.execute("UPDATE alert SET state = 'open', ack_expires_at = NULL,"
                             " updated_at = %s WHERE id = %s", (now, alert["id"]))
                expired = record_event(conn, alert["id"], "lease_expired", at=now,
                                       detail={"acknowledged_by": alert["acknowledged_by"],
                                               "expired_at": alert["ack_expires_at"]},
                                       state="open", severity=alert["severity"],
                                       team_id=alert["team_id"], patient_id=alert["patient_id"])
                alert["state"] = "open"
                if not alert["inhibited_by"] and not _snoozed(alert, now):
                    self.enter_level(conn, alert, 0, reason="reopened", now=now)
                fhir_push.enqueue(conn, alert["id"], "lease_expired", expired, at=now,
                                  url=self.fhir_push_url)
                done += 1
            for alert in cur.execute(
                    f"SELECT {_ALERT_COLS} FROM alert WHERE state IN ('open', 'acknowledged')"
                    " AND snoozed_until <= %s FOR UPDATE SKIP LOCKED LIMIT %s",
                    (now, limit)).fetchall():
                conn.execute("UPDATE alert SET snoozed_until = NULL, updated_at = %s"
                             " WHERE id = %s", (now, alert["id"]))
                record_event(conn, alert["id"], "snooze_expired", at=now, state=alert["state"],
                             severity=alert["severity"], team_id=alert["team_id"],
                             patient_id=alert["patient_id"])
                alert["snoozed_until"] = None
                if alert["state"] == "open" and not alert["inhibited_by"]:
                    self.enter_level(conn, alert, alert["escalation_level"] or 0,
                                      reason="snooze_expired", now=now)
                done += 1
            for alert in cur.execute(
                    f"SELECT {_ALERT_COLS} FROM alert WHERE state = 'open'"
                    " AND next_escalation_at <= %s AND inhibited_by IS NULL"
                    " AND (snoozed_until IS NULL OR snoozed_until <= %s)"
                    " ORDER BY next_escalation_at FOR UPDATE SKIP LOCKED LIMIT %s",
                    (now, now, limit)).fetchall():
                policy = self._policy(alert)
                level = alert["escalation_level"]
                if level + 1 < len(policy.levels):
                    self.enter_level(conn, alert, level + 1, reason="escalated", now=now)
                    escalated.append(alert["team_id"])
                else:
                    self.enter_level(conn, alert, level, reason="reminder", now=now)
                done += 1
        if self.on_escalated is not None:
            for team_id in escalated:
                self.on_escalated(team_id)
        return done

    # -- levels and recipients -------------------------------------------------------------
    def _policy(self, alert: dict[str, Any]) -> EscalationPolicy:
        name = str(alert["escalation_policy"] or (alert["route"] or {}).get("escalation"))
        if name not in self.routing.policies:
            name = next(iter(self.routing.policies))
        return self.routing.policies[name]

    def enter_level(self, conn: psycopg.Connection[Any], alert: dict[str, Any], index: int,
                     *, reason: str, now: datetime) -> None:
        policy = self._policy(alert)
        index = min(index, len(policy.levels) - 1)
        level = policy.levels[index]
        recipients, team_id, notes = self._recipients(conn, alert, level, now)
        if index + 1 < len(policy.levels):
            nxt: datetime | None = now + (policy.levels[index + 1].after - level.after)
        else:
            nxt = now + policy.reminder if policy.reminder is not None else None
        conn.execute("UPDATE alert SET escalation_level = %s, level_entered_at = %s,"
                     " next_escalation_at = %s, team_id = %s, updated_at = %s WHERE id = %s",
                     (index, now, nxt, team_id, now, alert["id"]))
        event = {"opened": "notified", "severity_raised": "notified",
                 "snooze_expired": "notified"}.get(reason, reason)
        event_id = record_event(
            conn, alert["id"], event, at=now,
            detail={"level": index, "notify": level.notify, "rota_level": level.rota_level,
                    "policy": policy.name, "team_id": team_id, "notes": notes,
                    "next_escalation_at": nxt.isoformat() if nxt else None,
                    "recipients": [f"{r.channel}:{r.target}" for r in recipients]},
            state=alert["state"], severity=alert["severity"], team_id=team_id,
            patient_id=alert["patient_id"])
        payload = {"alert_id": alert["id"], "event": event, "reason": reason, "level": index,
                   "severity": alert["severity"], "summary": alert["summary"],
                   "rule_id": alert["rule_id"], "patient_id": alert["patient_id"],
                   "patient_name": alert.get("patient_name"), "team_id": team_id,
                   "opened_at": alert["opened_at"], "at": now,
                   "source": (alert["rule"] or {}).get("source")}
        for r in recipients:
            key = f"alert-{alert['id']}-event-{event_id}-{r.channel}-{r.target}"
            delivered = r.channel == "dashboard"  # the alert_event NOTIFY in this commit
            # One statement: the outbox row and, for the dashboard, its (only) attempt.
            conn.execute(
                "WITH n AS (INSERT INTO notification (alert_id, alert_event_id, channel, target,"
                " team_id, clinician_id, level, reason, idempotency_key, payload, state,"
                " attempts, created_at, next_attempt_at, delivered_at)"
                " VALUES (%(a)s, %(e)s, %(ch)s, %(t)s, %(team)s, %(c)s, %(lv)s, %(r)s, %(k)s,"
                " %(p)s::jsonb, %(st)s, %(n)s, %(now)s, %(now)s, %(d)s)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
                " INSERT INTO notification_attempt (notification_id, at, ok, duration_ms,"
                " response) SELECT id, %(now)s, true, 0, 'NOTIFY alert_event' FROM n"
                " WHERE %(delivered)s",
                {"a": alert["id"], "e": event_id, "ch": r.channel, "t": r.target,
                 "team": r.team_id, "c": r.clinician_id, "lv": index, "r": reason, "k": key,
                 "p": _dumps({**payload, "idempotency_key": key}),
                 "st": "delivered" if delivered else "pending", "n": 1 if delivered else 0,
                 "now": now, "d": now if delivered else None, "delivered": delivered})

    def _recipients(self, conn: psycopg.Connection[Any], alert: dict[str, Any], level: Level,
                    now: datetime) -> tuple[list[Recipient], str | None, list[str]]:
        """Who to tell at this level, the team that now holds the alert, and notes."""
        channels = tuple((alert["route"] or {}).get("channels") or ("dashboard",))
        team_id: str | None = alert["team_id"]
        notes: list[str] = []
        if team_id is None:
            team_id = self._fallback_of(conn, None)
            notes.append(f"no team: sent to default fallback {team_id}")
        people: list[tuple[int, str | None]] = []
        if level.notify == "on_duty" and team_id is not None:
            people = on_duty(conn, team_id, level.rota_level, now)
            if not people:
                gap_team = team_id
                fallback = self._fallback_of(conn, team_id)
                notes.append(f"nobody on duty in {gap_team} at rota level {level.rota_level}")
                if alert["category"] != "system":
                    self.raise_system_alert(
                        conn, f"system.rota_gap.{gap_team}.L{level.rota_level}",
                        f"Rota gap: nobody on duty in {gap_team} at level {level.rota_level}"
                        f" ({now:%Y-%m-%d %H:%M} UTC); alert {alert['id']} sent to "
                        f"{fallback or 'no fallback (stays with ' + gap_team + ')'}",
                        team_id=fallback or gap_team, at=now,
                        detail={"team_id": gap_team, "rota_level": level.rota_level,
                                "alert_id": alert["id"], "fallback": fallback})
                if fallback is None:
                    log.warning("rota gap: nobody on duty in %s at rota level %d and no"
                                " fallback team; alert %s stays with %s", gap_team,
                                level.rota_level, alert["id"], gap_team)
                else:
                    team_id = fallback
                    record_event(conn, alert["id"], "fallback", at=now,
                                 detail={"from": gap_team, "to": fallback,
                                         "reason": "nobody on duty"},
                                 state=alert["state"], severity=alert["severity"],
                                 team_id=fallback, patient_id=alert["patient_id"])
                    people = on_duty(conn, fallback, 0, now)
        elif level.notify == "fallback":
            fallback = self._fallback_of(conn, team_id)
            if fallback is not None and fallback != team_id:
                notes.append(f"escalated from {team_id} to fallback {fallback}")
                team_id = fallback
                people = on_duty(conn, fallback, 0, now)
            else:
                notes.append("no fallback team: stays with its team")
                log.warning("alert %s reached its fallback level but %s has no fallback"
                            " team; it stays there", alert["id"], team_id)
                if team_id is not None:
                    people = on_duty(conn, team_id, 0, now)
        out: list[Recipient] = []
        team_row = None
        if team_id is not None:
            team_row = conn.execute("SELECT email, webhook_url FROM team WHERE id = %s",
                                    (team_id,)).fetchone()
        if "dashboard" in channels and team_id is not None:
            out.append(Recipient("dashboard", team_id, team_id))
        if "email" in channels:
            emails = [(cid, e) for cid, e in people if e]
            out += [Recipient("email", e, team_id, cid) for cid, e in emails]
            if not emails and team_row and team_row[0]:
                out.append(Recipient("email", team_row[0], team_id))
        if "webhook" in channels and team_row and team_row[1]:
            out.append(Recipient("webhook", team_row[1], team_id))
        return out, team_id, notes

    def _fallback_of(self, conn: psycopg.Connection[Any], team_id: str | None) -> str | None:
        if team_id is not None:
            row = conn.execute("SELECT fallback_team_id FROM team_escalation WHERE team_id = %s",
                               (team_id,)).fetchone()
            if row is not None and row[0] is not None:
                return str(row[0])
        default = self.routing.default_fallback_team
        if default is not None and default != team_id and conn.execute(
                "SELECT 1 FROM team WHERE id = %s", (default,)).fetchone():
            return default
        return None

    # -- system alerts -----------------------------------------------------------------
    def raise_system_alert(self, conn: psycopg.Connection[Any], rule_id: str, summary: str, *,
                           team_id: str | None, at: datetime, severity: str = "red",
                           detail: dict[str, Any] | None = None,
                           patient_id: int | None = None) -> int:
        """Open (or re-trigger) the one active system alert for ``rule_id`` and notify it.

        ``team_id`` holds it, under that team's own escalation policy when it has one;
        ``patient_id`` names the patient it is about (an overdue task, an unanswered
        hand-over), whose record the team then sees while it is active (server.access)."""
        row = conn.execute(
            "UPDATE alert SET trigger_count = trigger_count + 1, last_triggered_at = %s,"
            " updated_at = %s, summary = %s, detail = %s::jsonb WHERE category = 'system'"
            " AND rule_id = %s AND state IN ('open', 'acknowledged') RETURNING id",
            (at, at, summary, _dumps(detail or {}), rule_id)).fetchone()
        if row is not None:
            record_event(conn, row[0], "retriggered", at=at, detail={"summary": summary},
                         severity=severity, team_id=team_id)
            return int(row[0])
        _team, route = self.route(conn, None, None, severity, at, category="system",
                                  rule_id=rule_id)
        route["escalation"] = self.own_policy(conn, team_id, route["escalation"])
        rule = {"id": rule_id, "kind": "system", "title": "System alert",
                "source": "Homeward alert engine (never drop an alert)"}
        inserted = conn.execute(
            "INSERT INTO alert (category, rule_id, rule, severity, summary, team_id, opened_at,"
            " updated_at, last_triggered_at, detail, route, escalation_policy, patient_id)"
            " VALUES ('system', %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s,"
            " %s) RETURNING id",
            (rule_id, _dumps(rule), severity, summary, team_id, at, at, at, _dumps(detail or {}),
             _dumps(route), route["escalation"], patient_id)).fetchone()
        assert inserted is not None
        alert_id = int(inserted[0])
        record_event(conn, alert_id, "opened", at=at, detail={"summary": summary},
                     state="open", severity=severity, team_id=team_id)
        self.on_change(conn, AlertChange(alert_id, "opened", severity, team_id), at)
        return alert_id

    def evaluation_failed(self, conn: psycopg.Connection[Any], failure: EvaluationFailure,
                          at: datetime) -> int:
        """A red system alert to the patient's (first) care team: a rule could not judge
        their reading, so until it is fixed a person must look at their readings."""
        row = conn.execute("SELECT display_name FROM patient WHERE id = %s",
                           (failure.patient_id,)).fetchone()
        care = self.care_teams(conn, failure.patient_id)
        name = row[0] if row else f"patient {failure.patient_id}"
        return self.raise_system_alert(
            conn, f"system.evaluation_failed.{failure.patient_id}.{failure.rule_id}",
            f"Rule {failure.rule_id} could not check a reading of {name}: review their "
            f"readings by hand until it is fixed ({failure.error})",
            team_id=care[0][0] if care else None, at=at,
            detail={"patient_id": failure.patient_id, "rule_id": failure.rule_id,
                    "reading_id": failure.reading_id,
                    "taken_at": failure.taken_at.isoformat(), "error": failure.error})

    def load(self, conn: psycopg.Connection[Any], alert_id: int) -> dict[str, Any] | None:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(f"SELECT {_ALERT_COLS} FROM alert WHERE id = %s",
                               (alert_id,)).fetchone()


_ALERT_COLS = ("id, category, patient_id, rule_id, rule, severity, state, summary, labels,"
               " team_id, opened_at, route, escalation_policy, escalation_level,"
               " level_entered_at, next_escalation_at, ack_expires_at, acknowledged_by,"
               " snoozed_until, inhibited_by,"
               " (SELECT display_name FROM patient WHERE patient.id = alert.patient_id)"
               " AS patient_name")


def _snoozed(alert: dict[str, Any], now: datetime) -> bool:
    return alert["snoozed_until"] is not None and alert["snoozed_until"] > now


def on_duty(conn: psycopg.Connection[Any], team_id: str, level: int,
            now: datetime) -> list[tuple[int, str | None]]:
    """Active clinicians on shift for ``team_id`` at rota ``level`` at ``now``: (id, email).
    A deactivated account on the rota is nobody on duty (a rota gap), not a recipient."""
    rows = conn.execute(
        "SELECT c.id, c.email FROM rota_shift s JOIN clinician c ON c.id = s.clinician_id"
        " WHERE s.team_id = %s AND s.level = %s AND s.starts_at <= %s AND s.ends_at > %s"
        " AND c.active"
        " ORDER BY s.starts_at, c.id", (team_id, level, now, now)).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def add_shift(conn: psycopg.Connection[Any], *, team_id: str, clinician_id: int,
              starts_at: datetime, ends_at: datetime, level: int = 0) -> int:
    row = conn.execute("INSERT INTO rota_shift (team_id, clinician_id, level, starts_at, ends_at)"
                       " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                       (team_id, clinician_id, level, starts_at, ends_at)).fetchone()
    assert row is not None
    return int(row[0])


def set_fallback(conn: psycopg.Connection[Any], team_id: str,
                 fallback_team_id: str | None) -> None:
    conn.execute("INSERT INTO team_escalation (team_id, fallback_team_id) VALUES (%s, %s)"
                 " ON CONFLICT (team_id) DO UPDATE"
                 " SET fallback_team_id = EXCLUDED.fallback_team_id",
                 (team_id, fallback_team_id))


__all__ = ["Notifier", "add_shift", "on_duty", "set_fallback", "timedelta"]
