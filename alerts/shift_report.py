"""The shift hand-over report of a team (issue 9): what happened in one period, usually
the shift that has just ended, for the team that takes over (docs/reports.md).

One builder (:func:`build`) makes the rows; the dashboard's page, the CSV, the PDF
(server/api/routes/reports.py) and the e-mail sent at the team's shift change
(:func:`send_due`, run by the alert worker's tick) all print those same rows.

The rows of a report for team T and the period [start, end):

- ``alert_new``: alerts opened in the period;
- ``alert_escalated``: each escalation in the period (an ``escalated`` alert event);
- ``alert_open``: alerts still open (or acknowledged) at the end;
- ``handover_in`` / ``handover_out``: hand-overs offered to T / by T in the period, or
  still waiting for an answer during it, with their state at the end;
- ``task_overdue``: T's tasks past due and not closed at the end;
- ``task_due``: T's tasks due in the period and closed by its end;
- ``status_change``: status changes of T's patients in the period.

The alerts are those a member of T sees: routed to T, or about a patient on T's caseload
(routed to T or elsewhere: the out-of-hours service at night).  States are as they were
at the end of the period, from the append-only histories, so a report of last week reads
the same today.

The period: the last shift of the team that has ended (``team_shift``: local start and
end times in the shift's time zone; an end before the start is the next morning; an end
equal to it, a whole day), worked out on the local calendar and then in UTC, so a night
across a clock change is 11 or 13 hours long; a team without shifts gets the last 12
hours.  This module imports nothing of the server (tests/test_architecture.py).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from alerts.outbox import Attachment, enqueue_message

log = logging.getLogger(__name__)

#: The zone the report prints times in (the dashboard's).
LONDON = ZoneInfo("Europe/London")
#: The period of a team without shifts: the last 12 hours.
DEFAULT_SPAN = timedelta(hours=12)
#: The longest period a report may cover.
MAX_SPAN = timedelta(days=7)
#: A shift that ended longer ago than this gets no e-mail any more (the worker was down
#: over the shift change, or the shift was defined since): its report is on the page.
SEND_LATE = timedelta(hours=6)
#: Shown in this order, with these titles.
SECTIONS: dict[str, str] = {
    "alert_new": "New alerts",
    "alert_escalated": "Escalations",
    "alert_open": "Alerts still open at the end",
    "handover_in": "Hand-overs in",
    "handover_out": "Hand-overs out",
    "task_overdue": "Tasks overdue",
    "task_due": "Tasks due and done",
    "status_change": "Patients whose status changed",
}
CSV_COLUMNS = ("section", "at", "at_local", "patient_id", "patient", "nhs_number", "item",
               "what", "severity", "state", "team", "by", "detail")
#: The alert events that change an alert's state, and the state they leave it in.
_STATE_AFTER = {"opened": "open", "reopened": "open", "lease_expired": "open",
                "acknowledged": "acknowledged", "renewed": "acknowledged",
                "resolved": "resolved", "auto_resolved": "auto_resolved"}
_ACTIVE = ("open", "acknowledged")


# -- the period ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Shift:
    """A named shift of a team, in local times of its zone."""

    name: str
    starts: time
    ends: time
    timezone: str = "Europe/London"

    def occurrence(self, on: date) -> tuple[datetime, datetime]:
        """The shift that ends on local date ``on``, in UTC."""
        tz = ZoneInfo(self.timezone)
        begins_on = on - timedelta(days=1) if self.ends <= self.starts else on
        start = datetime.combine(begins_on, self.starts, tz)
        end = datetime.combine(on, self.ends, tz)
        return start.astimezone(UTC), end.astimezone(UTC)

    def last_ended(self, at: datetime) -> tuple[datetime, datetime]:
        """The latest occurrence that has ended at ``at`` (its end <= ``at``)."""
        local = at.astimezone(ZoneInfo(self.timezone)).date()
        for days in range(-1, 4):
            start, end = self.occurrence(local - timedelta(days=days))
            if end <= at:
                return start, end
        raise AssertionError("a shift ends every day")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    #: The shift's name, when the period is one of the team's shifts.
    shift: str | None = None
    #: How it was chosen: "shift" (the last shift), "default" (no shifts: the last 12
    #: hours), "given" (from and to in the request).
    source: str = "shift"

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def team_shifts(conn: psycopg.Connection[Any], team_id: str) -> list[Shift]:
    rows = conn.execute("SELECT name, starts, ends, timezone FROM team_shift"
                        " WHERE team_id = %s ORDER BY name", (team_id,)).fetchall()
    return [Shift(str(r[0]), r[1], r[2], str(r[3])) for r in rows]


def last_shift(shifts: Sequence[Shift], at: datetime) -> Period | None:
    """The most recent occurrence of any of the shifts that has ended at ``at`` (on a
    tie, the longer one); None without shifts."""
    best: tuple[datetime, timedelta, str, datetime] | None = None
    for shift in shifts:
        start, end = shift.last_ended(at)
        key = (end, end - start, shift.name, start)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return None
    end, _, name, start = best
    return Period(start, end, name, "shift")


def default_period(conn: psycopg.Connection[Any], team_id: str, now: datetime) -> Period:
    """The team's last shift that has ended; the last 12 hours if it has no shifts."""
    found = last_shift(team_shifts(conn, team_id), now)
    if found is not None:
        return found
    end = now.astimezone(UTC).replace(microsecond=0)
    return Period(end - DEFAULT_SPAN, end, None, "default")


def previous_period(conn: psycopg.Connection[Any], team_id: str, period: Period) -> Period:
    """The period before ``period``: the shift that ended by its start (or as long a
    span just before it)."""
    if period.source != "given":
        found = last_shift(team_shifts(conn, team_id), period.start)
        if found is not None:
            return found
    span = period.end - period.start
    return Period(period.start - span, period.start, None, "given")


# -- the rows -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Row:
    section: str
    at: datetime
    item: str
    what: str
    patient_id: int | None = None
    patient: str = ""
    nhs_number: str = ""
    severity: str = ""
    state: str = ""
    team: str = ""
    by: str = ""
    detail: str = ""

    def csv_fields(self) -> list[str]:
        at = self.at.astimezone(UTC)
        return [self.section, at.strftime("%Y-%m-%dT%H:%M:%SZ"), local_stamp(self.at),
                "" if self.patient_id is None else str(self.patient_id), self.patient,
                self.nhs_number, self.item, self.what, self.severity, self.state, self.team,
                self.by, self.detail]

    def as_json(self) -> dict[str, Any]:
        return {"section": self.section, "at": self.at.astimezone(UTC).isoformat(),
                "item": self.item, "what": self.what, "patient_id": self.patient_id,
                "patient": self.patient, "nhs_number": self.nhs_number,
                "severity": self.severity, "state": self.state, "team": self.team,
                "by": self.by, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    email: str | None
    organisation_id: int


@dataclass(frozen=True)
class ShiftReport:
    team: Team
    period: Period
    generated_at: datetime
    rows: tuple[Row, ...]
    #: The team's shifts (for the page's wording).
    shifts: tuple[Shift, ...] = field(default=())
    #: The names of the teams the rows name (the rows carry ids).
    team_names: dict[str, str] = field(default_factory=dict)

    def section(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.section == name]

    def counts(self) -> dict[str, int]:
        return {name: len(self.section(name)) for name in SECTIONS}

    def patient_ids(self) -> list[int]:
        return sorted({r.patient_id for r in self.rows if r.patient_id is not None})

    def as_json(self) -> dict[str, Any]:
        return {"team": {"id": self.team.id, "name": self.team.name},
                "period": {"from": self.period.start.isoformat(),
                           "to": self.period.end.isoformat(), "shift": self.period.shift,
                           "source": self.period.source},
                "generated_at": self.generated_at.isoformat(), "counts": self.counts(),
                "rows": [r.as_json() for r in self.rows]}


def load_team(conn: psycopg.Connection[Any], team_id: str) -> Team | None:
    row = conn.execute("SELECT id, name, email, organisation_id FROM team WHERE id = %s",
                       (team_id,)).fetchone()
    return None if row is None else Team(str(row[0]), str(row[1]), row[2], int(row[3]))


def build(conn: psycopg.Connection[Any], team_id: str, period: Period, *,
          now: datetime) -> ShiftReport:
    """The report of ``team_id`` for ``period``: every row, in section order, then time."""
    team = load_team(conn, team_id)
    if team is None:
        raise LookupError(f"team {team_id} not found")
    args = {"team": team_id, "start": period.start, "end": period.end}
    rows: list[Row] = []
    with conn.cursor(row_factory=dict_row) as cur:
        rows += _alerts(cur, args)
        rows += _handovers(cur, args)
        rows += _tasks(cur, args)
        rows += _status_changes(cur, args)
    order = {name: i for i, name in enumerate(SECTIONS)}
    rows.sort(key=lambda r: (order[r.section], r.at, _item_number(r.item)))
    named = sorted({r.team for r in rows if r.team} | {team_id})
    names = {str(r[0]): str(r[1]) for r in conn.execute(
        "SELECT id, name FROM team WHERE id = ANY(%s)", (named,)).fetchall()}
    return ShiftReport(team, period, now, tuple(rows), tuple(team_shifts(conn, team_id)),
                       names)


def _item_number(item: str) -> int:
    tail = item.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


_CASELOAD = "SELECT patient_id FROM patient_team WHERE team_id = %(team)s"


def _alerts(cur: psycopg.Cursor[dict[str, Any]], args: dict[str, Any]) -> list[Row]:
    alerts = cur.execute(
        "SELECT a.id, a.patient_id, p.display_name AS patient, p.nhs_number, a.severity,"
        " a.summary, a.rule_id, a.team_id, a.opened_at, a.resolved_at, a.outcome, a.state,"
        " s.event AS last_event, c.display_name AS last_by"
        " FROM alert a LEFT JOIN patient p ON p.id = a.patient_id"
        " LEFT JOIN LATERAL (SELECT e.event, e.clinician_id FROM alert_event e"
        "   WHERE e.alert_id = a.id AND e.at < %(end)s AND e.event = ANY(%(events)s)"
        "   ORDER BY e.at DESC, e.id DESC LIMIT 1) s ON true"
        " LEFT JOIN clinician c ON c.id = s.clinician_id"
        f" WHERE (a.team_id = %(team)s OR a.patient_id IN ({_CASELOAD}))"
        " AND a.opened_at < %(end)s AND (a.resolved_at IS NULL OR a.resolved_at >= %(start)s)"
        " ORDER BY a.opened_at, a.id", {**args, "events": list(_STATE_AFTER)}).fetchall()
    rows: list[Row] = []
    for a in alerts:
        state = _alert_state_at_end(a, args["end"])
        base = {"item": f"alert {a['id']}", "what": a["summary"] or a["rule_id"],
                "patient_id": a["patient_id"], "patient": a["patient"] or "",
                "nhs_number": a["nhs_number"] or "", "severity": a["severity"],
                "state": state, "team": a["team_id"] or "",
                "by": a["last_by"] or ""}
        outcome = a["outcome"] if state == "resolved" and a["outcome"] else ""
        detail = a["rule_id"] + (f"; outcome: {outcome.replace('_', ' ')}" if outcome else "")
        if a["opened_at"] >= args["start"]:
            rows.append(Row("alert_new", a["opened_at"], detail=detail, **base))
        if state in _ACTIVE:
            rows.append(Row("alert_open", a["opened_at"], detail=detail, **base))
    ids = [int(a["id"]) for a in alerts]
    if ids:
        by_id = {int(a["id"]): a for a in alerts}
        for e in cur.execute(
                "SELECT e.alert_id, e.at, e.detail FROM alert_event e"
                " WHERE e.alert_id = ANY(%(ids)s) AND e.event = 'escalated'"
                " AND e.at >= %(start)s AND e.at < %(end)s ORDER BY e.at, e.id",
                {**args, "ids": ids}).fetchall():
            a = by_id[int(e["alert_id"])]
            detail = e["detail"] or {}
            level = detail.get("level")
            rows.append(Row(
                "alert_escalated", e["at"], f"alert {a['id']}", a["summary"] or a["rule_id"],
                a["patient_id"], a["patient"] or "", a["nhs_number"] or "", a["severity"],
                _alert_state_at_end(a, args["end"]), str(detail.get("team_id") or a["team_id"]
                                                         or ""), "",
                f"to level {level}" if level is not None else "escalated"))
    return rows


def _alert_state_at_end(alert: dict[str, Any], end: datetime) -> str:
    if alert["last_event"] in _STATE_AFTER:
        return _STATE_AFTER[str(alert["last_event"])]
    # no history (an alert written without the lifecycle): its state now, bounded by end
    if alert["resolved_at"] is not None and alert["resolved_at"] < end:
        return str(alert["state"])
    return str(alert["state"]) if alert["state"] in _ACTIVE else "open"


def _sbar(note: Any) -> str:
    if not isinstance(note, dict):
        return str(note or "")
    parts = [f"{key[0].upper()}: {note[key]}" for key in
             ("situation", "background", "assessment", "recommendation") if note.get(key)]
    return " | ".join(parts)


def _handovers(cur: psycopg.Cursor[dict[str, Any]], args: dict[str, Any]) -> list[Row]:
    found = cur.execute(
        "SELECT h.id, h.kind, h.alert_id, h.patient_id, p.display_name AS patient,"
        " p.nhs_number, h.from_team, h.to_team, h.note, h.state, h.offered_at,"
        " h.escalated_at, h.decided_at, h.decline_reason, a.summary, a.severity,"
        " o.display_name AS offered_by, d.display_name AS decided_by"
        " FROM handover h JOIN patient p ON p.id = h.patient_id"
        " LEFT JOIN alert a ON a.id = h.alert_id"
        " LEFT JOIN clinician o ON o.id = h.offered_by"
        " LEFT JOIN clinician d ON d.id = h.decided_by"
        " WHERE (h.from_team = %(team)s OR h.to_team = %(team)s) AND h.offered_at < %(end)s"
        " AND (h.offered_at >= %(start)s OR h.decided_at IS NULL OR h.decided_at >= %(start)s)"
        " ORDER BY h.offered_at, h.id", args).fetchall()
    rows = []
    for h in found:
        decided = h["decided_at"] is not None and h["decided_at"] < args["end"]
        state = str(h["state"]) if decided else "offered"
        incoming = h["to_team"] == args["team"]
        what = (f"alert {h['alert_id']}: {h['summary'] or ''}".rstrip(": ")
                if h["kind"] == "alert" else "lead of the care team")
        notes = [_sbar(h["note"])]
        if h["escalated_at"] is not None and h["escalated_at"] < args["end"]:
            notes.append("unanswered in time: escalated")
        if decided and h["decline_reason"]:
            notes.append(f"declined: {h['decline_reason']}")
        by = (h["decided_by"] if decided and h["decided_by"] else h["offered_by"]) or ""
        rows.append(Row("handover_in" if incoming else "handover_out", h["offered_at"],
                        f"handover {h['id']}", what, h["patient_id"], h["patient"] or "",
                        h["nhs_number"] or "", h["severity"] or "", state,
                        str(h["from_team"] if incoming else h["to_team"]), by,
                        "; ".join(n for n in notes if n)))
    return rows


def _tasks(cur: psycopg.Cursor[dict[str, Any]], args: dict[str, Any]) -> list[Row]:
    found = cur.execute(
        "SELECT t.id, t.patient_id, p.display_name AS patient, p.nhs_number, t.title,"
        " t.detail, t.priority, t.due_at, t.state, t.requested_team, t.requested_at,"
        " t.claimed_at, t.closed_at, t.close_note, r.display_name AS requested_by,"
        " cl.display_name AS claimed_by, x.display_name AS closed_by"
        " FROM task t JOIN patient p ON p.id = t.patient_id"
        " LEFT JOIN clinician r ON r.id = t.requested_by"
        " LEFT JOIN clinician cl ON cl.id = t.claimed_by"
        " LEFT JOIN clinician x ON x.id = t.closed_by"
        " WHERE t.team_id = %(team)s AND t.requested_at < %(end)s AND t.due_at < %(end)s"
        " AND ((t.closed_at IS NULL OR t.closed_at >= %(end)s)"
        "      OR (t.due_at >= %(start)s AND t.closed_at < %(end)s))"
        " ORDER BY t.due_at, t.id", args).fetchall()
    rows = []
    for t in found:
        closed = t["closed_at"] is not None and t["closed_at"] < args["end"]
        if closed:
            state, by = str(t["state"]), t["closed_by"] or ""
        elif t["claimed_at"] is not None and t["claimed_at"] < args["end"]:
            state, by = "claimed", t["claimed_by"] or ""
        else:
            state, by = "requested", t["requested_by"] or ""
        detail = "; ".join(x for x in (t["detail"] or "", t["close_note"] if closed else "")
                           if x)
        rows.append(Row("task_due" if closed else "task_overdue", t["due_at"],
                        f"task {t['id']}", t["title"], t["patient_id"], t["patient"] or "",
                        t["nhs_number"] or "", t["priority"], state,
                        str(t["requested_team"] or ""), by, detail))
    return rows


def _status_changes(cur: psycopg.Cursor[dict[str, Any]], args: dict[str, Any]) -> list[Row]:
    found = cur.execute(
        "SELECT * FROM (SELECT s.id, s.patient_id, p.display_name AS patient, p.nhs_number,"
        "  s.at, s.status, s.note, s.expected_end, s.team_id, c.display_name AS by,"
        "  lag(s.status) OVER (PARTITION BY s.patient_id ORDER BY s.at, s.id) AS previous"
        "  FROM patient_status_event s JOIN patient p ON p.id = s.patient_id"
        "  LEFT JOIN clinician c ON c.id = s.clinician_id"
        f"  WHERE s.patient_id IN ({_CASELOAD}) AND s.at < %(end)s) x"
        " WHERE x.at >= %(start)s ORDER BY x.at, x.id", args).fetchall()
    rows = []
    for s in found:
        what = (f"{s['previous']} → {s['status']}" if s["previous"] else str(s["status"]))
        detail = "; ".join(x for x in (
            f"expected back {local_stamp(s['expected_end'])}" if s["expected_end"] else "",
            s["note"] or "") if x)
        rows.append(Row("status_change", s["at"], f"status {s['id']}", what, s["patient_id"],
                        s["patient"] or "", s["nhs_number"] or "", "", str(s["status"]),
                        str(s["team_id"] or ""), s["by"] or "", detail))
    return rows


# -- printing -----------------------------------------------------------------------------

def local_stamp(at: datetime) -> str:
    """"2026-11-23 21:15 GMT": the exact local time, for files and e-mail."""
    return at.astimezone(LONDON).strftime("%Y-%m-%d %H:%M %Z")


def local_words(at: datetime) -> str:
    """"Mon 23 Nov 2026 21:15 GMT"."""
    local = at.astimezone(LONDON)
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %Y %H:%M %Z')}"


def period_words(period: Period) -> str:
    name = f"{period.shift.capitalize()} shift, " if period.shift else ""
    return f"{name}{local_words(period.start)} to {local_words(period.end)}"


def to_csv(report: ShiftReport) -> str:
    """One header line and one line per row (RFC 4180, CRLF), times in UTC and London."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow(row.csv_fields())
    return out.getvalue()


def file_stem(report: ShiftReport) -> str:
    end = report.period.end.astimezone(LONDON)
    return f"shift-report-{report.team.id}-{end:%Y%m%d-%H%M}"


def query_of(period: Period) -> str:
    """``from=...&to=...`` naming the period (RFC 3339, UTC)."""
    def stamp(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return urlencode({"from": stamp(period.start), "to": stamp(period.end)})


def subject(report: ShiftReport) -> str:
    c = report.counts()
    facts = [f"{c['alert_new']} new", f"{c['alert_escalated']} escalated",
             f"{c['alert_open']} still open"]
    if c["task_overdue"]:
        facts.append(f"{c['task_overdue']} tasks overdue")
    return (f"Shift report {report.team.name}: {period_words(report.period)} "
            f"({', '.join(facts)})")[:200]


def to_text(report: ShiftReport, *, link: str | None = None) -> str:
    """The report as plain text (the e-mail's body)."""
    lines = [f"Shift report: {report.team.name}", period_words(report.period), ""]
    if report.period.source == "default":
        lines += ["This team has no shifts defined: the report covers the last 12 hours.", ""]
    for name, title in SECTIONS.items():
        rows = report.section(name)
        lines.append(f"{title} ({len(rows)})")
        if not rows:
            lines.append("  none")
        for r in rows:
            who = f"{r.patient} (NHS {r.nhs_number})" if r.nhs_number else (r.patient or "-")
            facts = " · ".join(x for x in (r.severity, r.state, r.team, r.by) if x)
            lines.append(f"  {local_stamp(r.at)}  {r.item}  {who}: {r.what}"
                         + (f"  [{facts}]" if facts else ""))
            if r.detail:
                lines.append(f"      {r.detail}")
        lines.append("")
    if link:
        lines += [f"The report on the dashboard (and as PDF): {link}", ""]
    lines.append("The attached CSV holds every row.")
    return "\n".join(lines) + "\n"


# -- the e-mail at the shift change -------------------------------------------------------

def report_key(team_id: str, shift: str, end: datetime) -> str:
    return f"shift-report:{team_id}:{shift}:{end.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"


def _due(conn: psycopg.Connection[Any], now: datetime
         ) -> Iterable[tuple[str, str, Period]]:
    """(team id, e-mail, period) of every shift that ended within SEND_LATE of ``now``,
    of teams with an e-mail address."""
    rows = conn.execute(
        "SELECT s.team_id, t.email, s.name, s.starts, s.ends, s.timezone FROM team_shift s"
        " JOIN team t ON t.id = s.team_id WHERE COALESCE(t.email, '') <> ''"
        " ORDER BY s.team_id, s.name").fetchall()
    for team_id, email, name, starts, ends, zone in rows:
        try:
            start, end = Shift(name, starts, ends, zone).last_ended(now)
        except (ValueError, KeyError) as err:  # a zone the system no longer knows
            log.error("team %s shift %s: %s", team_id, name, err)
            continue
        if now - end <= SEND_LATE:
            yield str(team_id), str(email), Period(start, end, str(name), "shift")


def send_due(conn: psycopg.Connection[Any], now: datetime, *,
             dashboard_url: str = "http://127.0.0.1:8000") -> int:
    """Queue the report of each shift that has just ended, to its team's e-mail, through
    the outbox (the CSV attached); once per shift occurrence (its idempotency key).
    Returns how many were queued."""
    due = [(team, email, period, report_key(team, period.shift or "", period.end))
           for team, email, period in _due(conn, now)]
    if not due:
        return 0
    sent = {str(r[0]) for r in conn.execute(
        "SELECT idempotency_key FROM notification WHERE idempotency_key = ANY(%s)",
        ([key for *_, key in due],)).fetchall()}
    queued = 0
    for team_id, email, period, key in due:
        if key in sent:
            continue
        with conn.transaction():
            report = build(conn, team_id, period, now=now)
            link = (f"{dashboard_url.rstrip('/')}/teams/{team_id}/shift-report?"
                    f"{query_of(period)}")
            stem = file_stem(report)
            if enqueue_message(
                    conn, channel="email", target=email, subject=subject(report),
                    body=to_text(report, link=link), key=key, at=now, reason="shift_report",
                    team_id=team_id,
                    attachments=(Attachment(f"{stem}.csv", "text/csv",
                                            to_csv(report).encode()),),
                    detail={"team_id": team_id, "shift": period.shift,
                            "from": period.start.isoformat(),
                            "to": period.end.isoformat()}) is not None:
                queued += 1
                log.info("shift report of %s (%s) queued for %s", team_id, period.shift,
                         email, extra={"team_id": team_id})
    return queued
